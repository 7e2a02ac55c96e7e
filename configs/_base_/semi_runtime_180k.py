# mmdet's semi-supervised COCO schedule (180k iterations, SGD 0.01, steps at 120k/160k),
# the EMA teacher with a burn-in, teacher+student evaluation, pseudo-label pictures.
_base_ = ['./default_runtime.py']

max_iters = 180000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='TeacherStudentValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[120000, 160000], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=10000, max_keep_ckpts=2,
                    save_best='teacher/coco/bbox_mAP', rule='greater'))
custom_hooks = [
    dict(type='SafeCheckpointHook'),
    dict(type='DataCheckHook'),
    dict(type='MeanTeacherHook', momentum_decay=0.999, burn_in_iters=5000),
    dict(type='PseudoLabelVisHook', interval=2000),
]
