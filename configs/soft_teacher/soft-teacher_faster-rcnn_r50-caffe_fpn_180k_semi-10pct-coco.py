# Soft Teacher with Faster R-CNN R50-caffe FPN on COCO, 10% labels (fold 1): mmdet's
# soft_teacher recipe (thresholds 0.5 / 0.9 / 0.9, reg 0.02, 10 jitters at 0.06, unlabeled
# weight 4, 180k iterations, no burn-in) on ssl_det's runtime: MultiSourceSampler, teacher
# and student evaluation, pseudo-label pictures. Splits: tools/misc/split_coco.py.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../_base_/datasets/semi_coco_detection.py',
    '../_base_/semi_runtime_180k.py',
]

detector = _base_.model
detector.data_preprocessor = dict(
    type='DetDataPreprocessor',
    mean=[103.530, 116.280, 123.675],
    std=[1.0, 1.0, 1.0],
    bgr_to_rgb=False,
    pad_size_divisor=32)
detector.backbone = dict(
    type='ResNet',
    depth=50,
    num_stages=4,
    out_indices=(0, 1, 2, 3),
    frozen_stages=1,
    norm_cfg=dict(type='BN', requires_grad=False),
    norm_eval=True,
    style='caffe',
    init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron2/resnet50_caffe'))

model = dict(
    _delete_=True,
    type='SoftTeacher',
    detector=detector,
    data_preprocessor=dict(type='MultiBranchDataPreprocessor',
                           data_preprocessor=detector.data_preprocessor),
    # classification pseudo boxes: score >= 0.9; for an ignored band use
    # dict(type='DualThreshold', high=0.9, low=0.5) (SoftTeacher then makes the assigners
    # ignore it: ignore_iof_thr 0.5)
    pseudo_label=dict(type='FixedThreshold', score_thr=0.9),
    initial_score_thr=0.5,
    rpn_pseudo_thr=0.9,
    reg_pseudo_thr=0.02,
    jitter_times=10,
    jitter_scale=0.06,
    soft_background=True,
    unsup_weight=4.0,
    predict_on='teacher')

# as the paper and mmdet: the teacher starts as a copy of the student, no burn-in
custom_hooks = [
    dict(type='SafeCheckpointHook'),
    dict(type='DataCheckHook'),
    dict(type='MeanTeacherHook', momentum_decay=0.999, burn_in_iters=0),
    dict(type='PseudoLabelVisHook', interval=2000),
]
