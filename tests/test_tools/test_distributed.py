"""Two CPU processes (gloo) train a teacher-student model through tools/dist_train.sh."""
import glob
import os
import os.path as osp
import socket
import subprocess
import sys

import torch

from demo_helpers import ROOT, as_cli, data_overrides

SEMI_CFG = osp.join(ROOT, 'configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_process_gloo_training(tiny_demo, tmp_path):
    opts = data_overrides(tiny_demo, semi=True)
    opts.update({
        'train_cfg.max_iters': 3, 'train_cfg.val_interval': 1000,
        'default_hooks.checkpoint.interval': 3,
        'train_dataloader.batch_size': 2, 'train_dataloader.sampler.batch_size': 2,
        'custom_hooks.2.burn_in_iters': 1,
        # an untrained teacher: thresholds low enough for pseudo labels to flow
        'model.pseudo_label.init_high': 0.1, 'model.pseudo_label.init_low': 0.05,
        'model.pseudo_label.high_floor': 0.05, 'model.pseudo_label.low_floor': 0.01,
    })
    env = dict(os.environ, PORT=str(_free_port()), OMP_NUM_THREADS='1',
               PYTHON=sys.executable)
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), SEMI_CFG, '2',
         '--work-dir', str(tmp_path), '--cfg-options', *as_cli(opts)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = '\n'.join(open(p).read() for p in glob.glob(str(tmp_path / '*' / '*.log')))
    assert 'Distributed training: True' in log and 'GPU number: 2' in log  # world size 2
    checkpoint = torch.load(str(tmp_path / 'iter_3.pth'), weights_only=True)
    state = checkpoint['state_dict']
    teacher = {k[8:]: v for k, v in state.items() if k.startswith('teacher.')}
    student = {k[8:]: v for k, v in state.items() if k.startswith('student.')}
    assert teacher.keys() == student.keys()
    # the EMA ran after burn-in: the teacher follows the student but is not equal to it
    changed = [k for k in teacher if teacher[k].is_floating_point()
               and not torch.equal(teacher[k], student[k])]
    assert changed
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
