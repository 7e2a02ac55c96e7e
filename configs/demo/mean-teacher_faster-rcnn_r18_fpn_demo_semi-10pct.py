# Mean teacher on the demo data, stage 2: 10% labeled + 90% unlabeled, Faster R-CNN R18-FPN
# (narrow), continuing the 10%-label stage-1 model (faster-rcnn_r18_fpn_demo_sup-10pct_pretrain.py)
# with the same schedule, labeled images and iterations as the supervised stage 2
# (faster-rcnn_r18_fpn_demo_sup-10pct.py). The teacher starts as the stage-1 model and is
# then an EMA of the student; its pseudo labels are split by per-class thresholds that adapt
# to its score distribution, with an ignored band between low and high.
_base_ = [
    '../_base_/models/faster-rcnn_r18-narrow_fpn_demo.py',
    '../_base_/datasets/semi_demo_detection.py',
    '../_base_/schedules/demo_finetune.py',
    '../_base_/demo_runtime.py',
]

detector = _base_.model
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
    ignore_iof_thr=0.5,  # the assigners ignore proposals inside the ambiguous band
    unsup_weight=1.0,
    predict_on='teacher')

# The stage-1 checkpoint fills teacher and student (tools/demo.py passes its own).
load_from = 'work_dirs/demo/seed0/faster-rcnn_r18_fpn_demo_sup-10pct_pretrain/iter_1000.pth'
burn_in_iters = 0  # stage 1 was the burn-in
val_cfg = dict(type='TeacherStudentValLoop')
custom_hooks = [
    dict(type='SafeCheckpointHook'),
    dict(type='DataCheckHook'),
    dict(type='MeanTeacherHook', momentum_decay=0.99, burn_in_iters=burn_in_iters),
    dict(type='PseudoLabelVisHook', interval=100),
]
