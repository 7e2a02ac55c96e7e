"""A few iterations of Soft Teacher (Faster R-CNN and Mask R-CNN) through tools/train.py."""
import math
import os.path as osp
import uuid

import pytest
import torch

from demo_helpers import ROOT, as_cli, data_overrides
from tools import train as train_tool

CONFIGS = {
    'faster': 'configs/demo/soft-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py',
    'mask': 'configs/demo/soft-teacher_mask-rcnn_r18_fpn_demo_semi-10pct.py',
    'cascade': 'configs/demo/soft-teacher_cascade-rcnn_r18_fpn_demo_semi-10pct.py',
}
HEAD_LOSSES = {
    'faster': ['loss_cls', 'loss_bbox'],
    'mask': ['loss_cls', 'loss_bbox', 'loss_mask'],
    'cascade': [f's{i}.{k}' for i in range(3) for k in ('loss_cls', 'loss_bbox')],
}


def low_threshold_config(tmp_path, name):
    """The demo config with thresholds an untrained teacher passes, so that every kind of
    pseudo box (classification, RPN, regression) is produced in a few iterations."""
    path = tmp_path / f'{name}_low_thresholds.py'
    path.write_text(
        f"_base_ = [{osp.join(ROOT, CONFIGS[name])!r}]\n"
        "model = dict(pseudo_label=dict(_delete_=True, type='FixedThreshold', score_thr=0.05),\n"
        "             initial_score_thr=0.05, rpn_pseudo_thr=0.05, reg_pseudo_thr=10.0)\n")
    return str(path)


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_soft_teacher_trains(tiny_demo, tmp_path, name):
    options = data_overrides(tiny_demo, semi=True)
    options.update({'train_cfg.max_iters': 3, 'train_cfg.val_interval': 1000,
                    'train_dataloader.batch_size': 2, 'train_dataloader.sampler.batch_size': 2,
                    'custom_hooks.2.burn_in_iters': 1, 'custom_hooks.3.interval': 1,
                    'default_hooks.logger.interval': 1,
                    'randomness.seed': 0,
                    # a visualizer of its own (mmengine keeps instances by name), so that the
                    # pictures land in this run's work dir
                    'visualizer.name': f'vis_{uuid.uuid4().hex[:8]}',
                    'experiment_name': f'soft_{name}_{uuid.uuid4().hex[:8]}'})
    args = [low_threshold_config(tmp_path, name), '--work-dir', str(tmp_path), '--cfg-options',
            *as_cli(options)]
    runner = train_tool.build_runner(train_tool.parse_args(args))
    model = runner.model
    start = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    runner.train()

    logs = runner.message_hub.log_scalars
    unsup = [k for k in logs if k.startswith('train/unsup_') and 'loss' in k]
    expected = {'loss_rpn_cls', 'loss_rpn_bbox', *HEAD_LOSSES[name]}
    assert {k[len('train/unsup_'):] for k in unsup} == expected
    for key in unsup + ['train/loss']:
        assert math.isfinite(logs[key].current()), key
    for kind in ('confident', 'rpn', 'reg'):
        assert logs[f'train/pseudo_num_{kind}'].current() > 0, kind
    bg = logs['train/pseudo_mean_bg_weight'].current()
    assert 0 < bg < 1
    if name == 'mask':
        assert logs['train/unsup_loss_mask'].current() > 0
    # the EMA moved the teacher
    changed = [k for k, v in model.teacher.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, start[k])]
    assert changed
    # pseudo-label pictures were written
    pictures = list(tmp_path.glob('**/vis_image/pseudo_labels_*.png'))
    assert pictures


def test_soft_teacher_trains_with_flipped_teacher_views(tiny_demo, tmp_path):
    """``teacher_views`` from the command line: the teacher also labels each weak image
    flipped, and training runs on the fused pseudo labels."""
    options = data_overrides(tiny_demo, semi=True)
    options.update({'train_cfg.max_iters': 2, 'train_cfg.val_interval': 1000,
                    'train_dataloader.batch_size': 2, 'train_dataloader.sampler.batch_size': 2,
                    'custom_hooks.2.burn_in_iters': 0, 'custom_hooks.3.interval': 0,
                    'default_hooks.logger.interval': 1, 'randomness.seed': 0,
                    'model.teacher_views': '[horizontal,vertical]',
                    'visualizer.name': f'vis_{uuid.uuid4().hex[:8]}',
                    'experiment_name': f'soft_views_{uuid.uuid4().hex[:8]}'})
    args = [low_threshold_config(tmp_path, 'faster'), '--work-dir', str(tmp_path),
            '--cfg-options', *as_cli(options)]
    runner = train_tool.build_runner(train_tool.parse_args(args))
    assert runner.model.teacher_views == ['horizontal', 'vertical']
    runner.train()
    logs = runner.message_hub.log_scalars
    for key in ('train/unsup_loss_cls', 'train/unsup_loss_rpn_cls', 'train/loss'):
        assert math.isfinite(logs[key].current()), key
    assert logs['train/pseudo_num_confident'].current() > 0
    views = logs['train/pseudo/views_per_box'].data[0]
    assert len(views) == 2 and all(1.0 <= v <= 3.0 for v in views)


def test_mmdet_thresholds_from_scratch_never_teach_background(tiny_demo, tmp_path):
    """mmdet's COCO thresholds on a teacher trained from scratch (no burn-in): the regime in
    which mmdet's SoftTeacher collapses. No pseudo box passes, so every unlabeled loss is
    zero (nothing teaches "background everywhere"), and the log says the teacher starves."""
    options = data_overrides(tiny_demo, semi=True)
    options.update({'train_cfg.max_iters': 3, 'train_cfg.val_interval': 1000,
                    'train_dataloader.batch_size': 2, 'train_dataloader.sampler.batch_size': 2,
                    'custom_hooks.2.burn_in_iters': 0, 'custom_hooks.3.interval': 0,
                    'default_hooks.logger.interval': 1, 'randomness.seed': 0,
                    'model.pseudo_label._delete_': True,
                    'model.pseudo_label.type': 'FixedThreshold',
                    'model.pseudo_label.score_thr': 0.9, 'model.initial_score_thr': 0.5,
                    'model.rpn_pseudo_thr': 0.9, 'model.starving_iters': 2,
                    'experiment_name': f'starving_{uuid.uuid4().hex[:8]}'})
    args = [osp.join(ROOT, CONFIGS['faster']), '--work-dir', str(tmp_path), '--cfg-options',
            *as_cli(options)]
    runner = train_tool.build_runner(train_tool.parse_args(args))
    runner.train()
    logs = runner.message_hub.log_scalars
    assert logs['train/pseudo_num_confident'].current() == 0
    assert logs['train/pseudo_starving_iters'].current() == 3
    unsup = [k for k in logs if k.startswith('train/unsup_') and 'loss' in k]
    assert {'train/unsup_loss_cls', 'train/unsup_loss_rpn_cls'} <= set(unsup)
    for key in unsup:
        assert logs[key].current() == 0, key
    assert logs['train/sup_loss_cls'].current() > 0
    log_text = ''.join(p.read_text() for p in tmp_path.glob('*/*.log'))
    assert 'starving teacher: no confident pseudo box for 2 iterations' in log_text


@pytest.mark.parametrize('replace_strong', [True, False])
def test_soft_teacher_trains_on_mixed_pseudo_labels(tiny_demo, tmp_path, replace_strong):
    """MixPL's switch on Soft Teacher: once the cache is full the student learns on a Mixup
    and a Mosaic batch of pseudo-labeled strong views; both losses are finite and their
    pictures are drawn. With MixPL's rule (replace_strong) the Mixup batch replaces the
    strong views' loss and the mixed batches train the RoI regression too; added to the
    strong views' loss, they leave the regression to the jitter-checked boxes."""
    options = data_overrides(tiny_demo, semi=True)
    options.update({'train_cfg.max_iters': 7, 'train_cfg.val_interval': 1000,
                    'train_dataloader.batch_size': 2, 'train_dataloader.sampler.batch_size': 2,
                    'custom_hooks.2.burn_in_iters': 1, 'custom_hooks.3.interval': 1,
                    'default_hooks.logger.interval': 1, 'randomness.seed': 0,
                    'model.mixing.cache_size': 4, 'model.mixing.replace_strong': replace_strong,
                    'visualizer.name': f'vis_{uuid.uuid4().hex[:8]}',
                    'experiment_name': f'soft_mix_{uuid.uuid4().hex[:8]}'})
    args = [low_threshold_config(tmp_path, 'faster'), '--work-dir', str(tmp_path),
            '--cfg-options', *as_cli(options)]
    runner = train_tool.build_runner(train_tool.parse_args(args))
    runner.train()
    logs = runner.message_hub.log_scalars
    for name in ('mixup', 'mosaic'):
        keys = [k for k in logs if k.startswith(f'train/unsup_{name}_loss')]
        assert {f'train/unsup_{name}_loss_cls', f'train/unsup_{name}_loss_rpn_cls'} <= set(keys)
        for key in keys:
            assert math.isfinite(logs[key].current()), key
        assert logs[f'train/pseudo_{name}_boxes_per_img'].current() > 0
        assert (f'train/unsup_{name}_loss_bbox' in logs) == replace_strong
        assert f'train/unsup_{name}_loss_rpn_bbox' in logs
    assert 'train/unsup_loss_bbox' in logs  # the strong views' loss before the cache filled

    def iterations(key):
        return len(logs[key].data[0])

    # pseudo labels every unlabeled iteration; the strong views' own loss in all of them,
    # or only until the Mixup batch took its place
    unlabeled, strong, mixed = (iterations('train/pseudo_num_confident'),
                                iterations('train/unsup_loss_cls'),
                                iterations('train/unsup_mixup_loss_cls'))
    assert 0 < mixed < unlabeled
    assert strong == (unlabeled - mixed if replace_strong else unlabeled)
    assert list(tmp_path.glob('**/vis_image/pseudo_labels_mixed_*.png'))
