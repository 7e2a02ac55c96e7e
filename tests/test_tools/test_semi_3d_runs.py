"""The HSSDA-style 3D teacher-student config trains through tools/train.py (one process) and
tools/dist_train.sh (two gloo processes) on a few generated LiDAR scenes."""
import glob
import json
import math
import os
import os.path as osp
import re
import socket
import subprocess
import sys
import uuid

import pytest
import torch
from mmengine.hooks import Hook

from demo_helpers import ROOT, as_cli, semi_3d_overrides
from ssl_det.datasets.demo_data_3d import make_demo_data_3d
from tools import train as train_tool

CFG = osp.join(ROOT, 'configs/point_cloud/hssda_pillar-center_demo3d_semi-10pct.py')


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('semi3d'))
    make_demo_data_3d(root, num_train=20, num_val=3, seed=1, verbose=False)
    return root + '/'


def overrides(root, iters=3):
    return semi_3d_overrides(root, iters)


def test_semi_3d_trains_with_tiers_ema_pictures_and_saved_thresholds(scenes, tmp_path):
    args = train_tool.parse_args([CFG, '--work-dir', str(tmp_path), '--cfg-options',
                                  *as_cli(overrides(scenes))])
    runner = train_tool.build_runner(args)
    runner.train()
    log = open(glob.glob(str(tmp_path / '*' / '*.log'))[0]).read()
    for key in ('sup_loss_heatmap', 'unsup_loss_heatmap', 'unsup_loss_bbox'):
        values = [float(v) for v in re.findall(rf' {key}: ([-\d.e+naif]+)', log)]
        assert values and all(math.isfinite(v) for v in values), key
    high = [float(v) for v in re.findall(r' pseudo_num_high: ([\d.]+)', log)]
    assert high and max(high) > 0  # pseudo boxes reached the student
    assert re.search(r'teacher/ap3d/mAP: [\d.]+', log) and re.search(r'student/ap3d/mAP', log)
    assert glob.glob(str(tmp_path / '*' / 'vis_data' / 'vis_image' / 'pseudo_labels_*.png'))
    state = torch.load(str(tmp_path / 'iter_3.pth'), weights_only=True)['state_dict']
    teacher = {k[8:]: v for k, v in state.items() if k.startswith('teacher.')}
    student = {k[8:]: v for k, v in state.items() if k.startswith('student.')}
    assert [k for k in teacher if teacher[k].is_floating_point()
            and not torch.equal(teacher[k], student[k])]  # EMA, not a copy
    model = runner.model
    assert torch.equal(state['pseudo_label.high_thr'], model.pseudo_label.high_thr)
    assert state['pseudo_label.num_updates'] == model.pseudo_label.num_updates > 0


@pytest.mark.parametrize('joint', [True, False])
def test_joint_batch_config_trains(scenes, tmp_path, joint):
    """The shipped config's one student pass over the labeled and strong scenes (its default
    since 2026-12-07) trains, both losses finite; ``model.joint_batch=False`` (benchmark
    ablation ``hssda_two_passes``) gives each batch its own pass."""
    extra = [] if joint else ['model.joint_batch=False']
    args = train_tool.parse_args([CFG, '--work-dir', str(tmp_path), '--cfg-options',
                                  *as_cli(overrides(scenes, iters=2)), *extra])
    runner = train_tool.build_runner(args)
    assert runner.model.joint_batch is joint
    calls = []
    parts = runner.model.student.loss_parts
    runner.model.student.loss_parts = lambda batches: calls.append(
        [len(s) for _, s in batches]) or parts(batches)
    runner.train()
    log = open(glob.glob(str(tmp_path / '*' / '*.log'))[0]).read()
    for key in ('sup_loss_heatmap', 'unsup_loss_heatmap'):
        values = [float(v) for v in re.findall(rf' {key}: ([-\d.e+naif]+)', log)]
        assert values and all(math.isfinite(v) for v in values), key
    if joint:
        assert calls and all(len(c) == 2 and min(c) > 0 for c in calls), calls
    else:
        assert not calls


def test_patch_mix_config_trains(scenes, tmp_path):
    """``model.patch_mix=True`` (benchmark ablation ``hssda_patch_mix``): the strong scenes
    trade their shuffle's patches in training, in the config's one student pass."""
    args = train_tool.parse_args([CFG, '--work-dir', str(tmp_path), '--cfg-options',
                                  *as_cli(overrides(scenes, iters=3)), 'model.patch_mix=True'])
    runner = train_tool.build_runner(args)
    mixes = []
    mix = runner.model._mix_patches
    runner.model._mix_patches = lambda points, samples: mixes.append(len(samples)) or mix(
        points, samples)
    runner.train()
    # every iteration after the one burn-in iteration, over the batch's 2 strong scenes
    assert mixes == [2, 2]
    samples = runner.model.latest_pseudo['data_samples']
    # one source scene for each patch of the config's 3 x 3 grid
    assert all(len(s.metainfo['bev_mix']['sources']) == len(s.metainfo['bev_shuffle']['perm'])
               == 9 for s in samples)
    log = open(glob.glob(str(tmp_path / '*' / '*.log'))[0]).read()
    for key in ('sup_loss_heatmap', 'unsup_loss_heatmap', 'unsup_loss_bbox'):
        values = [float(v) for v in re.findall(rf' {key}: ([-\d.e+naif]+)', log)]
        assert values and all(math.isfinite(v) for v in values), key


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_process_gloo_training_3d(scenes, tmp_path):
    opts = overrides(scenes)
    opts.update({'train_dataloader.batch_size': 2, 'train_dataloader.sampler.batch_size': 2,
                 'train_cfg.val_interval': 1000})
    env = dict(os.environ, PORT=str(_free_port()), OMP_NUM_THREADS='1', PYTHON=sys.executable)
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), CFG, '2', '--work-dir',
         str(tmp_path), '--cfg-options', *as_cli(opts)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = '\n'.join(open(p).read() for p in glob.glob(str(tmp_path / '*' / '*.log')))
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    state = torch.load(str(tmp_path / 'iter_3.pth'), weights_only=True)['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert any(k.startswith('teacher.bbox_head') for k in state)


class _Capture(Hook):
    """Records the policy's state when training starts (after ``--resume`` loaded it)."""
    state = None

    def before_train(self, runner):
        policy = runner.model.pseudo_label
        self.state = {k: v.clone() for k, v in policy.state_dict().items()}


def test_thresholds_survive_train_resume(scenes, tmp_path):
    """A run stopped after 2 iterations and continued with ``tools/train.py --resume`` (no
    path: the work dir's latest checkpoint) starts from the saved adapted thresholds, not the
    config's initial ones, and goes on adapting them."""
    opts = overrides(scenes, iters=2)
    opts.update({'default_hooks.checkpoint.interval': 1, 'train_cfg.val_interval': 1000,
                 'custom_hooks.3.interval': 0, 'model.pseudo_label.min_count': 1})
    runner = train_tool.build_runner(train_tool.parse_args(
        [CFG, '--work-dir', str(tmp_path), '--cfg-options', *as_cli(opts)]))
    runner.train()
    saved = torch.load(str(tmp_path / 'iter_2.pth'), weights_only=True)['state_dict']
    saved = {k[len('pseudo_label.'):]: v for k, v in saved.items()
             if k.startswith('pseudo_label.')}
    assert saved['num_updates'] > 0
    assert saved['score_hist'].sum() > 0  # adapted state, unlike a fresh policy's zeros

    opts.update({'train_cfg.max_iters': 3, 'experiment_name': f'test_{uuid.uuid4().hex[:8]}',
                 'visualizer.name': f'vis_{uuid.uuid4().hex[:8]}'})
    resumed = train_tool.build_runner(train_tool.parse_args(
        [CFG, '--work-dir', str(tmp_path), '--resume', '--cfg-options', *as_cli(opts)]))
    capture = _Capture()
    resumed.register_hook(capture, priority='LOWEST')
    resumed.train()
    assert resumed.iter == 3
    for key, value in saved.items():
        assert torch.equal(capture.state[key], value), key
    policy = resumed.model.pseudo_label
    assert policy.num_updates > saved['num_updates']  # and it kept adapting from there


def test_hssda_threshold_rule_and_feature_unshuffle_train(scenes, tmp_path):
    """The two HSSDA variants train end to end: thresholds from the teacher's boxes that
    match labels (``MatchedScoreThreshold``) and the shuffle undone on the BEV features
    (no cut boxes, the teacher's boxes supervise in place); the teacher also labels each
    scene mirrored (``teacher_views``, given on the command line), on the labeled and the
    unlabeled scenes."""
    opts = overrides(scenes, iters=3)
    opts.update({'train_cfg.val_interval': 1000, 'custom_hooks.3.interval': 0,
                 'model.teacher_views': '[flip_y]',
                 'model.pseudo_label.type': 'MatchedScoreThreshold',
                 'model.pseudo_label.match_iou': 0.01, 'model.pseudo_label.min_count': 1,
                 'train_dataloader.dataset.datasets.1.pipeline.1.unsup_student.3.mode':
                     'unshuffle_features',
                 # its patch borders fall on whole feature-map cells: HSSDA's 2 x 2
                 'train_dataloader.dataset.datasets.1.pipeline.1.unsup_student.3.grid': [2, 2],
                 # the untrained teacher's few matched boxes keep their scores
                 'model.top_support': None})
    runner = train_tool.build_runner(train_tool.parse_args(
        [CFG, '--work-dir', str(tmp_path), '--cfg-options', *as_cli(opts)]))
    assert type(runner.model.pseudo_label).__name__ == 'MatchedScoreThreshold'
    runner.train()
    log = open(glob.glob(str(tmp_path / '*' / '*.log'))[0]).read()
    for key in ('sup_loss_heatmap', 'unsup_loss_heatmap', 'unsup_loss_bbox'):
        values = [float(v) for v in re.findall(rf' {key}: ([-\d.e+naif]+)', log)]
        assert values and all(math.isfinite(v) for v in values), key
    assert max(float(v) for v in re.findall(r' pseudo_num_high: ([\d.]+)', log)) > 0
    assert {float(v) for v in re.findall(r' pseudo_num_cut: ([\d.]+)', log)} == {0.0}
    scalars = [json.loads(line) for line in
               open(glob.glob(str(tmp_path / '*' / 'vis_data' / 'scalars.json'))[0])]
    matched = [s['pseudo/num_matched_labeled'] for s in scalars
               if 'pseudo/num_matched_labeled' in s]
    assert matched and max(matched) > 0
    views = [s['pseudo/views_per_box'] for s in scalars if 'pseudo/views_per_box' in s]
    assert views and all(1.0 <= v <= 2.0 for v in views) and max(views) > 1.0
    assert runner.model.teacher_views == [dict(flip_x=False, flip_y=True, rot=0.0, scale=1.0)]
    policy = runner.model.pseudo_label
    # updated on every iteration after the 1-iteration burn-in
    assert policy.score_hist.sum() > 0 and float(policy.num_updates) == 2
