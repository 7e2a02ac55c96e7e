"""RTMDet as TeacherStudent's student: its teacher is not silent (mmdetection #10223)."""
import uuid

import torch

from demo_helpers import ROOT, as_cli, data_overrides
from tools import train as train_tool

SEMI_CFG = f'{ROOT}/configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py'
# An RTMDet at about 1/8 of rtmdet-s's width, with its BatchNorm everywhere (SyncBN acts as
# BN without a process group) and its quality-focal-loss scores.
TINY_RTMDET = '''
rtm = dict(
    type='RTMDet',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[103.53, 116.28, 123.675],
                           std=[57.375, 57.12, 58.395], bgr_to_rgb=False, batch_augments=None),
    backbone=dict(type='CSPNeXt', arch='P5', expand_ratio=0.5, deepen_factor=0.167,
                  widen_factor=0.125, channel_attention=True, norm_cfg=dict(type='SyncBN'),
                  act_cfg=dict(type='SiLU', inplace=True)),
    neck=dict(type='CSPNeXtPAFPN', in_channels=[32, 64, 128], out_channels=32,
              num_csp_blocks=1, expand_ratio=0.5, norm_cfg=dict(type='SyncBN'),
              act_cfg=dict(type='SiLU', inplace=True)),
    bbox_head=dict(type='RTMDetSepBNHead', num_classes=5, in_channels=32, stacked_convs=1,
                   feat_channels=32,
                   anchor_generator=dict(type='MlvlPointGenerator', offset=0, strides=[8, 16, 32]),
                   bbox_coder=dict(type='DistancePointBBoxCoder'),
                   loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0,
                                 loss_weight=1.0),
                   loss_bbox=dict(type='GIoULoss', loss_weight=2.0), with_objectness=False,
                   exp_on_reg=True, share_conv=True, pred_kernel_size=1,
                   norm_cfg=dict(type='SyncBN'), act_cfg=dict(type='SiLU', inplace=True)),
    train_cfg=dict(assigner=dict(type='DynamicSoftLabelAssigner', topk=13), allowed_border=-1,
                   pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.001,
                  nms=dict(type='nms', iou_threshold=0.65), max_per_img=100))
'''


def test_rtmdet_teacher_is_not_silent(tiny_demo, tmp_path):
    """mmdet's MeanTeacherHook leaves the teacher's BatchNorm statistics at their start
    (skip_buffer=True): an RTMDet teacher, whose every block has BN, then sees features on
    the wrong scale and predicts nothing (#10223). ssl_det's hook averages the buffers too:
    after a burn-in the teacher's statistics have moved with the student's and it scores
    the labeled images as the student does."""
    config = tmp_path / 'rtmdet.py'
    config.write_text(
        f'_base_ = [{SEMI_CFG!r}]\n' + TINY_RTMDET +
        'model = dict(_delete_=True, type="TeacherStudent", detector=rtm,\n'
        '             data_preprocessor=dict(type="MultiBranchDataPreprocessor",\n'
        '                                    data_preprocessor=rtm["data_preprocessor"]),\n'
        '             pseudo_label=dict(type="FixedThreshold", score_thr=0.05),\n'
        '             unsup_weight=1.0)\n'
        'optim_wrapper = dict(_delete_=True, type="OptimWrapper",\n'
        '                     optimizer=dict(type="AdamW", lr=4e-3, weight_decay=0.05))\n')
    options = data_overrides(tiny_demo, semi=True)
    options.update({'train_cfg.max_iters': 44, 'train_cfg.val_interval': 1000,
                    'train_dataloader.batch_size': 4, 'train_dataloader.sampler.batch_size': 4,
                    'custom_hooks.2.burn_in_iters': 40, 'custom_hooks.3.interval': 0,
                    'default_hooks.logger.interval': 1, 'randomness.seed': 0,
                    'experiment_name': f'rtm_{uuid.uuid4().hex[:8]}'})
    runner = train_tool.build_runner(train_tool.parse_args(
        [str(config), '--work-dir', str(tmp_path), '--cfg-options', *as_cli(options)]))
    model = runner.model
    start = {k: v.clone() for k, v in model.teacher.state_dict().items() if 'running' in k}
    runner.train()
    moved = [k for k, v in model.teacher.state_dict().items()
             if 'running' in k and not torch.allclose(v, start[k])]
    assert len(moved) == len(start)  # every BN statistic of the teacher followed the student

    batch = next(iter(runner.train_dataloader))
    data = model.data_preprocessor(batch, True)
    inputs, samples = data['inputs']['sup'], data['data_samples']['sup']
    model.eval()
    with torch.no_grad():
        teacher = [r.pred_instances.scores for r in model.teacher.predict(inputs, samples)]
        student = [r.pred_instances.scores for r in model.student.predict(inputs, samples)]
    best_t = max(float(s.max()) if len(s) else 0.0 for s in teacher)
    best_s = max(float(s.max()) if len(s) else 0.0 for s in student)
    assert best_s > 0.05
    assert best_t > 0.5 * best_s, (best_t, best_s)
    logs = runner.message_hub.log_scalars
    assert logs['train/pseudo_num_confident'].current() > 0
