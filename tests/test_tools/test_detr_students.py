"""DETR-family students: a tiny DINO trains in TeacherStudent on tiny data; its one-to-one
matching is named when a policy's ignored band cannot apply."""
import math
import uuid

import pytest
import torch

from demo_helpers import ROOT, as_cli, data_overrides
from tools import train as train_tool

SEMI_CFG = f'{ROOT}/configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py'
# What the tiny DETRs share: an R18 at 1/8 width and the neck (embed_dims 256, see below).
SHARED = '''
SHARED = dict(
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=1),
    backbone=dict(type='ResNet', depth=18, base_channels=8, num_stages=4, out_indices=(1, 2, 3),
                  norm_cfg=dict(type='BN'), style='pytorch', init_cfg=None),
    neck=dict(type='ChannelMapper', in_channels=[16, 32, 64], kernel_size=1, out_channels=256,
              act_cfg=None, norm_cfg=dict(type='GN', num_groups=32), num_outs=4),
)
'''
# A DINO small enough for 2 CPU cores: an R18 at 1/8 width, one encoder layer, two decoder
# layers, 20 queries. embed_dims stays 256: mmdet's DINO decoder encodes reference points
# in 4 x 128 = 2 x 256 sine features.
TINY_DINO = SHARED + '''
dino = dict(
    type='DINO', num_queries=20, with_box_refine=True, as_two_stage=True,
    **SHARED,
    encoder=dict(num_layers=1, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=256, num_levels=4, num_heads=4, num_points=2, dropout=0.0),
        ffn_cfg=dict(embed_dims=256, feedforward_channels=64, ffn_drop=0.0))),
    decoder=dict(num_layers=2, return_intermediate=True, post_norm_cfg=None, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=256, num_heads=4, dropout=0.0),
        cross_attn_cfg=dict(embed_dims=256, num_levels=4, num_heads=4, num_points=2,
                            dropout=0.0),
        ffn_cfg=dict(embed_dims=256, feedforward_channels=64, ffn_drop=0.0))),
    positional_encoding=dict(num_feats=128, normalize=True, offset=0.0, temperature=20),
    bbox_head=dict(type='DINOHead', num_classes=5, embed_dims=256, sync_cls_avg_factor=True,
                   loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                                 loss_weight=1.0),
                   loss_bbox=dict(type='L1Loss', loss_weight=5.0),
                   loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    dn_cfg=dict(label_noise_scale=0.5, box_noise_scale=1.0,
                group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=10)),
    train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
        dict(type='FocalLossCost', weight=2.0),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
    test_cfg=dict(max_per_img=20))
'''

# Deformable DETR at the same size (single-stage queries, no box refinement: mmdet's base)
TINY_DEFORMABLE = SHARED + '''
dino = dict(
    type='DeformableDETR', num_queries=20, num_feature_levels=4, with_box_refine=False,
    as_two_stage=False,
    **SHARED,
    encoder=dict(num_layers=1, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=256, num_heads=4, num_points=2, batch_first=True),
        ffn_cfg=dict(embed_dims=256, feedforward_channels=64, ffn_drop=0.0))),
    decoder=dict(num_layers=2, return_intermediate=True, post_norm_cfg=None, layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=256, num_heads=4, dropout=0.0, batch_first=True),
        cross_attn_cfg=dict(embed_dims=256, num_heads=4, num_points=2, batch_first=True),
        ffn_cfg=dict(embed_dims=256, feedforward_channels=64, ffn_drop=0.0))),
    positional_encoding=dict(num_feats=128, normalize=True, offset=-0.5),
    bbox_head=dict(type='DeformableDETRHead', num_classes=5, embed_dims=256,
                   sync_cls_avg_factor=True,
                   loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                                 loss_weight=2.0),
                   loss_bbox=dict(type='L1Loss', loss_weight=5.0),
                   loss_iou=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
        dict(type='FocalLossCost', weight=2.0),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
    test_cfg=dict(max_per_img=20))
'''


def dino_config(tmp_path, pseudo_label, model=TINY_DINO):
    path = tmp_path / f'dino_{uuid.uuid4().hex[:6]}.py'
    path.write_text(
        f'_base_ = [{SEMI_CFG!r}]\n' + model +
        'model = dict(_delete_=True, type="TeacherStudent", detector=dino,\n'
        '             data_preprocessor=dict(type="MultiBranchDataPreprocessor",\n'
        '                                    data_preprocessor=dino["data_preprocessor"]),\n'
        f'             pseudo_label={pseudo_label!r}, unsup_weight=1.0)\n'
        'optim_wrapper = dict(_delete_=True, type="OptimWrapper",\n'
        '                     optimizer=dict(type="AdamW", lr=1e-4, weight_decay=1e-4),\n'
        '                     clip_grad=dict(max_norm=0.1, norm_type=2))\n')
    return str(path)


def runner_for(tiny_demo, tmp_path, pseudo_label, iters=4, model=TINY_DINO):
    options = data_overrides(tiny_demo, semi=True)
    options.update({'train_cfg.max_iters': iters, 'train_cfg.val_interval': 1000,
                    'train_dataloader.batch_size': 2, 'train_dataloader.sampler.batch_size': 2,
                    'custom_hooks.2.burn_in_iters': 1, 'custom_hooks.3.interval': 0,
                    'default_hooks.logger.interval': 1, 'randomness.seed': 0,
                    'experiment_name': f'dino_{uuid.uuid4().hex[:8]}'})
    args = [dino_config(tmp_path, pseudo_label, model), '--work-dir', str(tmp_path), '--cfg-options',
            *as_cli(options)]
    return train_tool.build_runner(train_tool.parse_args(args))


@pytest.mark.parametrize('name', ['dino', 'deformable_detr'])
def test_tiny_detr_family_trains_as_a_student(tiny_demo, tmp_path, name):
    # an untrained DETR's sigmoid scores sit near its focal-loss prior (0.01): a threshold
    # under it lets pseudo boxes flow
    detector = TINY_DINO if name == 'dino' else TINY_DEFORMABLE
    runner = runner_for(tiny_demo, tmp_path, dict(type='FixedThreshold', score_thr=0.005),
                        model=detector)
    model = runner.model
    start = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    runner.train()
    logs = runner.message_hub.log_scalars
    unsup = [k for k in logs if k.startswith('train/unsup_') and 'loss' in k]
    # the last decoder layer's losses and the others' (d0.); DINO's also its encoder
    # proposals' (enc_) and its denoising queries' (dn_), on the pseudo boxes as on the labels
    keys = ['loss_cls', 'loss_bbox', 'loss_iou', 'd0.loss_cls']
    if name == 'dino':
        keys += ['enc_loss_cls', 'dn_loss_cls']
    for key in keys:
        assert f'train/unsup_{key}' in unsup, key
        assert f'train/sup_{key}' in logs, key
    for key in unsup + ['train/loss']:
        assert math.isfinite(logs[key].current()), key
    assert logs['train/pseudo_num_confident'].current() > 0
    assert logs['train/unsup_loss_bbox'].current() > 0
    changed = [k for k, v in model.teacher.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, start[k])]
    assert changed  # the EMA moved the teacher


def test_a_band_policy_on_dino_names_one_to_one_matching(tiny_demo, tmp_path, monkeypatch):
    from ssl_det.models.utils import detector_checks
    seen = []
    monkeypatch.setattr(detector_checks, 'print_log',
                        lambda msg, logger=None, level=None: seen.append(msg))
    runner_for(tiny_demo, tmp_path, dict(type='DualThreshold', high=0.5, low=0.2), iters=1)
    warning = [m for m in seen if 'BACKGROUND' in m]
    assert len(warning) == 1
    assert 'HungarianAssigner: one-to-one matching' in warning[0]


def test_the_coco_dino_config_uses_mmdets_dino():
    # configs/_base_/models/dino-4scale_r50.py restates mmdet's DINO model (mmdet's file
    # also carries data and runtime, which a semi-supervised config cannot inherit twice)
    import os.path as osp

    import mmdet
    from mmengine.config import Config
    ours = Config.fromfile(
        f'{ROOT}/configs/mean_teacher/mean-teacher_dino-4scale_r50_180k_semi-10pct-coco.py')
    theirs = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'dino',
                                      'dino-4scale_r50_8xb2-12e_coco.py'))
    assert ours.model.detector.to_dict() == theirs.model.to_dict()
    assert ours.model.type == 'TeacherStudent'
    assert ours.model.pseudo_label.type == 'FixedThreshold'  # no band for one-to-one matching
    assert ours.train_dataloader.sampler.type == 'MultiSourceSampler'
