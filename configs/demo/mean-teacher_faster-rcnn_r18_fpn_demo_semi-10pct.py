# Mean teacher on the demo data: 10% labeled + 90% unlabeled, Faster R-CNN R18-FPN
# (narrow), dual-threshold pseudo labels, a supervised burn-in, then EMA teacher.
_base_ = [
    '../_base_/models/faster-rcnn_r18-narrow_fpn_demo.py',
    '../_base_/datasets/semi_demo_detection.py',
    '../_base_/default_runtime.py',
]

detector = _base_.model
detector.train_cfg.rpn.assigner.ignore_iof_thr = 0.5
detector.train_cfg.rcnn.assigner.ignore_iof_thr = 0.5
model = dict(
    _delete_=True,
    type='TeacherStudent',
    detector=detector,
    data_preprocessor=dict(type='MultiBranchDataPreprocessor',
                           data_preprocessor=detector.data_preprocessor),
    pseudo_label=dict(type='DualThreshold', high=0.8, low=0.5),
    unsup_weight=1.0,
    predict_on='teacher')

max_iters = 500
burn_in_iters = 200
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='TeacherStudentValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[int(max_iters * 0.75)], gamma=0.1),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1))
custom_hooks = [
    dict(type='SafeCheckpointHook'),
    dict(type='DataCheckHook'),
    dict(type='MeanTeacherHook', momentum_decay=0.99, burn_in_iters=burn_in_iters),
    dict(type='PseudoLabelVisHook', interval=100),
]
