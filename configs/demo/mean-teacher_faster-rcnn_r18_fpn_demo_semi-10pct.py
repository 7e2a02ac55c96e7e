# Mean teacher on the demo data: 10% labeled + 90% unlabeled, Faster R-CNN R18-FPN
# (narrow), a supervised burn-in, then an EMA teacher whose pseudo labels are split by
# per-class thresholds that adapt to its score distribution (a teacher trained from scratch
# for a few hundred iterations scores almost nothing above 0.5: fixed 0.9/0.5 thresholds
# would give no pseudo labels at all), with an ignored band between low and high.
_base_ = [
    '../_base_/models/faster-rcnn_r18-narrow_fpn_demo.py',
    '../_base_/datasets/semi_demo_detection.py',
    '../_base_/schedules/demo_500it.py',
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
    pseudo_label=dict(
        type='DynamicThreshold', num_classes=5, init_high=0.6, init_low=0.3,
        momentum=0.98, high_floor=0.35, high_ceil=0.9, low_floor=0.15, low_ceil=0.6,
        min_count=50),
    unsup_weight=1.0,
    predict_on='teacher')

burn_in_iters = 200
val_cfg = dict(type='TeacherStudentValLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval={{_base_.max_iters}},
                    max_keep_ckpts=1))
custom_hooks = [
    dict(type='SafeCheckpointHook'),
    dict(type='DataCheckHook'),
    dict(type='MeanTeacherHook', momentum_decay=0.99, burn_in_iters=burn_in_iters),
    dict(type='PseudoLabelVisHook', interval=100),
]
