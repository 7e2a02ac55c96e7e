"""Crash-safe checkpoints and an exact resume through tools/train.py."""
import glob
import os
import os.path as osp
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid

import torch

from demo_helpers import ROOT, as_cli, data_overrides
from ssl_det.utils.checkpoint import checkpoint_loads, find_resume_checkpoint
from tools import train as train_tool

# Soft Teacher: its box jitter draws random numbers in the main process, so an exact
# continuation needs the saved random states as well as the data's
CFG = osp.join(ROOT, 'configs/demo/soft-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')


def options(root, iters, workers=2, **extra):
    opts = data_overrides(root, semi=True)
    opts.update({'train_cfg.max_iters': iters, 'train_cfg.val_interval': 1000,
                 'default_hooks.checkpoint.interval': 1,
                 'default_hooks.checkpoint.max_keep_ckpts': 2,
                 'train_dataloader.batch_size': 2, 'train_dataloader.sampler.batch_size': 2,
                 # worker processes: each sample's augmentation must not depend on which
                 # worker drew it or what it drew before
                 'train_dataloader.num_workers': workers,
                 'train_dataloader.persistent_workers': workers > 0,
                 'custom_hooks.2.burn_in_iters': 1, 'custom_hooks.3.interval': 0,
                 'model.pseudo_label.min_count': 1, 'randomness.seed': 5,
                 'experiment_name': f'resume_{uuid.uuid4().hex[:8]}',
                 'visualizer.name': f'vis_{uuid.uuid4().hex[:8]}'})
    opts.update(extra)
    return opts


def train(root, work_dir, iters, *extra_args, **opts):
    args = [CFG, '--work-dir', str(work_dir), *extra_args, '--cfg-options',
            *as_cli(options(root, iters, **opts))]
    runner = train_tool.build_runner(train_tool.parse_args(args))
    runner.train()
    return runner


def state(path):
    return torch.load(str(path), weights_only=True)['state_dict']


def test_resumed_run_equals_the_uninterrupted_one(tiny_demo, tmp_path):
    """Weights, teacher and thresholds after 6 iterations are the same whether the run was
    stopped after 3 and resumed (crossing an epoch of the sampler) or not; the resume
    skipped the trained batches by index, without loading them."""
    full = tmp_path / 'full'
    runner = train(tiny_demo, full, 6)
    # the sampler's epochs ended inside one DataLoader iterator: mmengine never restarted it
    # (a restart pauses 2 s and refills the workers)
    assert runner.train_loop.dataloader.batch_sampler._epoch >= 1
    assert runner.train_loop.dataloader_iterator._epoch == 0
    assert 'Reach the end of the dataloader' not in open(
        glob.glob(str(full / '*' / '*.log'))[0]).read()
    resumed_dir = tmp_path / 'resumed'
    resumed_dir.mkdir()
    shutil.copy(full / 'iter_3.pth', resumed_dir / 'iter_3.pth')  # as if killed after 3
    runner = train(tiny_demo, resumed_dir, 6, '--resume', **{'randomness.seed': 99})
    assert runner.iter == 6 and runner.seed == 5  # the checkpoint's seed, not the config's
    expected, got = state(full / 'iter_6.pth'), state(resumed_dir / 'iter_6.pth')
    assert expected.keys() == got.keys()
    differ = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not differ, differ[:5]
    log = open(glob.glob(str(resumed_dir / '*' / '*.log'))[0]).read()
    assert 'resumed the data at iteration 3' in log
    assert 'Advance dataloader' not in log


def test_resume_without_saved_random_state_is_not_exact(tiny_demo, tmp_path):
    """The same comparison, with the resumed run's random states left as mmengine sets
    them: the weights differ, so the test above can tell."""
    full = tmp_path / 'full'
    train(tiny_demo, full, 4, workers=0)
    resumed_dir = tmp_path / 'resumed'
    resumed_dir.mkdir()
    ckpt = torch.load(str(full / 'iter_2.pth'), weights_only=True)
    del ckpt['rng_state']
    torch.save(ckpt, str(resumed_dir / 'iter_2.pth'))
    train(tiny_demo, resumed_dir, 4, '--resume', workers=0)
    expected, got = state(full / 'iter_4.pth'), state(resumed_dir / 'iter_4.pth')
    assert any(not torch.equal(expected[k], got[k]) for k in expected)


def _launch(root, work_dir, iters, resume, env):
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), CFG, '--work-dir',
           str(work_dir)] + (['--resume'] if resume else []) + [
        '--cfg-options', *as_cli(options(root, iters, workers=0))]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_9_during_a_save_and_at_random_moments_then_resume(tiny_demo, tmp_path):
    """SIGKILL inside a checkpoint save (slowed by SSL_DET_SLOW_SAVE_S) leaves the previous
    checkpoint complete and named by last_checkpoint; more kills at random moments; then
    ``--resume`` (no path) finishes the run."""
    work_dir = tmp_path / 'run'
    env = dict(os.environ, OMP_NUM_THREADS='1', SSL_DET_SLOW_SAVE_S='4')
    proc = _launch(tiny_demo, work_dir, 5, False, env)
    deadline = time.time() + 240
    while time.time() < deadline and not glob.glob(str(work_dir / '.iter_2.pth.*.tmp')):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.05)
    assert glob.glob(str(work_dir / '.iter_2.pth.*.tmp')), 'no save of iter_2 seen'
    _kill(proc)  # inside the save of iter_2: its bytes are written, not yet renamed
    assert not (work_dir / 'iter_2.pth').exists()
    assert open(work_dir / 'last_checkpoint').read().strip().endswith('iter_1.pth')
    assert find_resume_checkpoint(str(work_dir)) == str(work_dir / 'iter_1.pth')

    rng = random.Random(0)
    env['SSL_DET_SLOW_SAVE_S'] = '0'
    for _ in range(2):  # kills at random moments of a resumed run
        proc = _launch(tiny_demo, work_dir, 5, True, env)
        time.sleep(rng.uniform(3, 15))
        if proc.poll() is None:
            _kill(proc)
        latest = find_resume_checkpoint(str(work_dir))
        assert latest is not None and checkpoint_loads(latest)
        torch.load(latest, weights_only=True)  # complete, and loads
    proc = _launch(tiny_demo, work_dir, 5, True, env)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    final = torch.load(str(work_dir / 'iter_5.pth'), weights_only=True)
    assert final['meta']['iter'] == 5
    assert all(torch.isfinite(v).all() for v in final['state_dict'].values()
               if v.is_floating_point())
    assert not glob.glob(str(work_dir / ".*.tmp"))  # the killed save's leftover is gone
