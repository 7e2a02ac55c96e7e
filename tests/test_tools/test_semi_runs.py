"""Teacher-student runs through tools/train.py: resume and start-up checks."""
import glob
import json
import os.path as osp
import shutil
import uuid

import cv2
import pytest
import torch

from demo_helpers import ROOT, as_cli, data_overrides
from ssl_det.datasets.transforms import LoadImageFromFile
from ssl_det.datasets.unreadable import UnreadableDataError
from tools import train as train_tool

SEMI_CFG = osp.join(ROOT, 'configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')


def semi_args(root, work_dir, iters=2, *extra, **opts):
    options = data_overrides(root, semi=True)
    options.update({'train_cfg.max_iters': iters, 'train_cfg.val_interval': 1000,
                    'default_hooks.checkpoint.interval': 1,
                    'default_hooks.checkpoint.max_keep_ckpts': 5,
                    'train_dataloader.batch_size': 2, 'train_dataloader.sampler.batch_size': 2,
                    'custom_hooks.2.burn_in_iters': 1,
                    'custom_hooks.3.interval': 0,
                    'model.pseudo_label.min_count': 1,
                    'experiment_name': f'semi_{uuid.uuid4().hex[:8]}',
                    # a visualizer of its own (mmengine keeps instances by name): its
                    # vis_data/scalars.json lands in this run's work dir
                    'visualizer.name': f'vis_{uuid.uuid4().hex[:8]}'})
    options.update(opts)
    return [SEMI_CFG, '--work-dir', str(work_dir), *extra, '--cfg-options', *as_cli(options)]


def test_resume_restores_teacher_student_and_thresholds(tiny_demo, tmp_path):
    runner = train_tool.build_runner(train_tool.parse_args(semi_args(tiny_demo, tmp_path, 3)))
    runner.train()
    saved = torch.load(str(tmp_path / 'iter_2.pth'), weights_only=True)
    state = saved['state_dict']
    # the adapted thresholds and the score histogram are part of the checkpoint
    assert state['pseudo_label.score_hist'].sum() > 0
    # the labeled-loss guard saw the labeled loss of the one unlabeled iteration (burn-in 1)
    assert int(state['unsup_guard.count']) == 1 and float(state['unsup_guard.ref']) > 0
    assert any(k.startswith('teacher.') for k in state) and any(k.startswith('student.')
                                                               for k in state)
    args = semi_args(tiny_demo, tmp_path / 'resumed', 3, '--resume', str(tmp_path / 'iter_2.pth'))
    resumed = train_tool.build_runner(train_tool.parse_args(args))
    resumed._train_loop = resumed.build_train_loop(resumed._train_loop)
    resumed.optim_wrapper = resumed.build_optim_wrapper(resumed.optim_wrapper)
    resumed.param_schedulers = resumed.build_param_scheduler(resumed.param_schedulers)
    resumed.load_or_resume()
    assert resumed.iter == 2
    current = resumed.model.state_dict()
    for key, value in state.items():
        assert torch.equal(current[key], value), key
    # the thresholds in use are the saved ones, not the config's initial ones
    thresholds = resumed.model.pseudo_label.thresholds()
    assert torch.equal(thresholds['high'], state['pseudo_label.high_thr'])


def test_category_mismatch_between_labeled_and_unlabeled_is_an_error(tiny_demo, tmp_path):
    root = tmp_path / 'demo'
    shutil.copytree(tiny_demo, root)
    unlabeled = root / 'semi_anns' / 'instances_train.1@10-unlabeled.json'
    data = json.load(open(unlabeled))
    data['categories'][0]['name'] = 'disc'
    json.dump(data, open(unlabeled, 'w'))
    runner = train_tool.build_runner(train_tool.parse_args(
        semi_args(str(root), tmp_path / 'w', 1)))
    with pytest.raises(ValueError, match="categories of the labeled file .* differ"):
        runner.train()


def test_text_log_keeps_totals_and_scalars_keep_per_class_keys(tiny_demo, tmp_path):
    """Per-class pseudo-label keys stay off the text lines but reach vis_data/scalars.json,
    and a per-class table named by the dataset's classes is printed; mmengine's expected
    "Reach the end of the dataloader" warning is not."""
    args = semi_args(tiny_demo, tmp_path, 3, **{'default_hooks.logger.interval': 1,
                                                'log_processor.table_interval': 2})
    runner = train_tool.build_runner(train_tool.parse_args(args))
    runner.train()
    log_file, = glob.glob(str(tmp_path / '*' / '*.log'))
    lines = [line for line in open(log_file) if 'Iter(train)' in line]
    assert len(lines) == 3
    assert 'pseudo_num_confident' in lines[-1]  # after burn-in, the totals are on the line
    for line in lines:
        assert 'sup_loss' in line and 'pseudo/' not in line  # per-class keys are not
    scalars = [json.loads(line) for line in
               open(glob.glob(str(tmp_path / '*' / 'vis_data' / 'scalars.json'))[0])]
    train = [s for s in scalars if 'loss' in s]
    assert len(train) == 3 and 'pseudo/thr_high_0' in train[-1]
    text = open(log_file).read()
    classes = runner.train_dataloader.dataset.metainfo['classes']
    table = text[text.index('per-class statistics at iteration 2'):]
    assert '| class | num_confident |' in table and f'| {classes[0]} |' in table
    assert 'Reach the end of the dataloader' not in text


def _inject_nan(runner, at_iters, key):
    """Make loss ``key`` NaN at the 0-based iterations ``at_iters`` (None: all from 1 on)."""
    model = runner.model
    loss = model.loss

    def poisoned(*args, **kwargs):
        losses = loss(*args, **kwargs)
        if (runner.iter in at_iters) if at_iters is not None else runner.iter >= 1:
            losses[key] = losses[key] * float('nan')
        return losses
    model.loss = poisoned


def test_nan_loss_skips_the_step_and_the_ema_and_is_logged(tiny_demo, tmp_path):
    args = semi_args(tiny_demo, tmp_path, 4, **{'default_hooks.logger.interval': 1})
    runner = train_tool.build_runner(train_tool.parse_args(args))
    _inject_nan(runner, {2}, 'sup_loss_cls')
    runner.train()  # the run goes on
    before = torch.load(str(tmp_path / 'iter_2.pth'), weights_only=True)['state_dict']
    skipped = torch.load(str(tmp_path / 'iter_3.pth'), weights_only=True)['state_dict']
    after = torch.load(str(tmp_path / 'iter_4.pth'), weights_only=True)['state_dict']
    for key, value in before.items():
        if key.startswith(('student.', 'teacher.')) and value.is_floating_point():
            # weights, BN statistics (restored after the NaN forward) and the teacher's EMA
            assert torch.equal(skipped[key], value), key
    assert any(not torch.equal(after[k], skipped[k]) for k in after
               if k.startswith('student.'))  # the next iteration trained again
    log = open(glob.glob(str(tmp_path / '*' / '*.log'))[0]).read()
    assert 'iteration 3: non-finite loss (sup_loss_cls=nan' in log
    assert '1 in the run' in log
    assert runner.optim_wrapper.num_skipped == 1
    scalars = [json.loads(line) for line in
               open(glob.glob(str(tmp_path / '*' / 'vis_data' / 'scalars.json'))[0])]
    train = [s for s in scalars if 'loss' in s]
    assert [s['nonfinite_skips'] for s in train] == [0.0, 0.0, 1.0, 1.0]


def test_gradient_spike_skips_the_step_and_keeps_the_weights_finite(tiny_demo, tmp_path):
    """A finite loss a million times too large (an exploding gradient) is skipped like a NaN:
    a ported config without clip_grad would otherwise apply it and break the weights."""
    args = semi_args(tiny_demo, tmp_path, 5, **{'optim_wrapper.spike_min_steps': 2,
                                                'optim_wrapper.clip_grad': None})
    runner = train_tool.build_runner(train_tool.parse_args(args))
    model = runner.model
    loss = model.loss

    def exploding(*a, **kw):
        losses = loss(*a, **kw)
        if runner.iter == 3:
            losses['sup_loss_cls'] = losses['sup_loss_cls'] * 1e6
        return losses
    model.loss = exploding
    runner.train()
    before = torch.load(str(tmp_path / 'iter_3.pth'), weights_only=True)['state_dict']
    skipped = torch.load(str(tmp_path / 'iter_4.pth'), weights_only=True)['state_dict']
    for key, value in before.items():
        if key.startswith(('student.', 'teacher.')) and value.is_floating_point():
            assert torch.isfinite(skipped[key]).all() and torch.equal(skipped[key], value), key
    assert runner.optim_wrapper.num_skipped == 1
    log = open(glob.glob(str(tmp_path / '*' / '*.log'))[0]).read()
    assert 'iteration 4: gradient spike (gradient norm' in log
    assert 'optim_wrapper.spike_ratio=50.0' in log


def test_consecutive_nan_losses_stop_the_run_without_a_nan_checkpoint(tiny_demo, tmp_path):
    args = semi_args(tiny_demo, tmp_path, 8, **{'optim_wrapper.max_consecutive_skips': 3})
    runner = train_tool.build_runner(train_tool.parse_args(args))
    _inject_nan(runner, None, 'sup_loss_bbox')
    with pytest.raises(RuntimeError, match=r'3 optimizer steps in a row were skipped for a non-finite loss '
                                           r'\(last: sup_loss_bbox=nan'):
        runner.train()
    assert runner.iter == 3  # iterations 2, 3, 4 skipped: stopped inside the 4th
    for path in glob.glob(str(tmp_path / 'iter_*.pth')):
        state = torch.load(path, weights_only=True)['state_dict']
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_checkpoint_with_non_finite_weights_is_refused(tiny_demo, tmp_path):
    runner = train_tool.build_runner(train_tool.parse_args(semi_args(tiny_demo, tmp_path, 1)))
    runner.train()
    next(runner.model.student.parameters()).data[0] = float('inf')
    with pytest.raises(RuntimeError, match='refusing to save a checkpoint'):
        runner.save_checkpoint(str(tmp_path), 'bad.pth')
    assert not (tmp_path / 'bad.pth').exists()


def _dirty_copy(tiny_demo, tmp_path, keep=2):
    """A copy of the demo data whose unlabeled images are all missing or truncated, in turn,
    except the last ``keep``."""
    root = tmp_path / 'dirty'
    shutil.copytree(tiny_demo, root)
    unlabeled = json.load(open(root / 'semi_anns' / 'instances_train.1@10-unlabeled.json'))
    names = sorted(img['file_name'] for img in unlabeled['images'])
    for i, name in enumerate(names[:-keep]):
        path = root / 'images' / name
        if i % 2:
            path.unlink()
        else:  # cut short: PNGs, and every other one re-encoded as a JPEG first
            data = path.read_bytes()
            if i % 4 == 2:
                data = cv2.imencode('.jpg', cv2.imread(str(path)))[1].tobytes()
            path.write_bytes(data[:len(data) // 2])
    return str(root), names


def test_unreadable_unlabeled_images_are_skipped_counted_and_named(tiny_demo, tmp_path,
                                                                   monkeypatch):
    root, names = _dirty_copy(tiny_demo, tmp_path)
    # the oracle: every unreadable file the loader met (num_workers=0: in this process) is
    # one skip of one draw, counted once although the draw has a weak and a strong view
    failures = []
    load = LoadImageFromFile.transform

    def counted(self, results):
        try:
            return load(self, results)
        except UnreadableDataError as exc:
            failures.append(exc.path)
            raise
    monkeypatch.setattr(LoadImageFromFile, 'transform', counted)
    args = semi_args(root, tmp_path / 'run', 3, **{'default_hooks.logger.interval': 1})
    runner = train_tool.build_runner(train_tool.parse_args(args))
    assert runner.cfg.train_dataloader.num_workers == 0
    runner.train()  # no crash
    log = open(glob.glob(str(tmp_path / 'run' / '*' / '*.log'))[0]).read()
    assert 'are missing on disk' in log and 'they will be skipped while training' in log
    assert 'skipped an unreadable file' in log
    assert ': file not found' in log and ': truncated PNG (no IEND chunk)' in log
    assert ': truncated JPEG (no end-of-image marker)' in log
    skipped = [line for line in log.splitlines() if 'skipped an unreadable file' in line]
    hook = next(h for h in runner.hooks if type(h).__name__ == 'DataCheckHook')
    assert hook.num_skipped == len(skipped) == len(failures) > 0
    scalars = [json.loads(line) for line in
               open(glob.glob(str(tmp_path / 'run' / '*' / 'vis_data' / 'scalars.json'))[0])]
    assert [s for s in scalars if 'loss' in s][-1]['skipped_unreadable'] == len(skipped)


def test_unreadable_labeled_image_stops_the_run_naming_it(tiny_demo, tmp_path):
    root = tmp_path / 'dirty'
    shutil.copytree(tiny_demo, root)
    labeled = json.load(open(root / 'semi_anns' / 'instances_train.1@10.json'))
    for img in labeled['images']:
        path = root / 'images' / img['file_name']
        path.write_bytes(path.read_bytes()[:100])
    runner = train_tool.build_runner(train_tool.parse_args(semi_args(str(root), tmp_path, 2)))
    with pytest.raises(UnreadableDataError, match=r'truncated PNG .*labeled data .*'
                                                  r'instances_train.1@10.json'):
        runner.train()
