# HSSDA-style teacher-student PillarDetector on KITTI 3-class with 2% of the training frames
# labeled (3DIoUMatch / HSSDA's setting; they report the mean of 3 splits). Stage 2: continue
# a supervised model of the same labeled split (pillar-center_kitti-3class.py trained on
# semi_anns/kitti_infos_train.1@2.json: pass its checkpoint as load_from). HSSDA's settings
# (azhuantou/HSSDA tools/cfgs/kitti_models/pv_rcnn_ssl.yaml, pv_rcnn_ssl.py): 80 epochs of
# the 3,712 train frames (here 4 labeled + 4 unlabeled frames per iteration and GPU: 37,120
# iterations on one GPU; divide by the number of GPUs), Adam one-cycle to LR 0.01 (40% rise,
# start at a tenth), weight decay 0.01, gradients clipped at 10; the EMA keep-rate rises
# linearly from 0.5 to 0.9996 over 2,000 steps. Per-class adaptive dual thresholds (HSSDA's
# own rule: pseudo_label=dict(type='MatchedScoreThreshold', ...)); the three tiers; the 2x2
# shuffle of the unlabeled frames; GT sampling on the student's whole input: the labeled
# split's objects are also pasted into each pseudo-labeled unlabeled frame, up to the labeled
# pipeline's targets (15 / 10 / 10) counting its pseudo boxes (labeled_paste, num_paste='fill').
# On the demo's GT-sampling protocol that put the teacher above supervised on every seed,
# where GT sampling on the labeled frames alone did not (docs/benchmarks.md).
_base_ = ['../_base_/models/pillar-center_kitti.py', '../_base_/datasets/semi_kitti-3class.py',
          '../_base_/default_runtime.py']

detector = _base_.model
model = dict(
    _delete_=True,
    type='TeacherStudent3D',
    detector=detector,
    data_preprocessor=dict(type='MultiBranchDataPreprocessor',
                           data_preprocessor=dict(type='PointCloudDataPreprocessor')),
    pseudo_label=dict(
        type='DynamicThreshold', num_classes=3, init_high=0.5, init_low=0.3, momentum=0.99,
        high_floor=0.3, high_ceil=0.9, low_floor=0.1, low_ceil=0.6, min_count=200),
    middle='weight',
    low='remove_points',
    low_score_thr=0.1,
    unsup_weight=1.0,
    predict_on='teacher',
    labeled_paste=dict(
        db_sampler=next(t for t in _base_.train_dataloader.dataset.datasets[0].pipeline
                        if t['type'] == 'ObjectSample'),
        num_paste='fill', point_cloud_range=_base_.point_cloud_range))

max_iters = 37120  # 80 epochs x 3712 frames / 8 frames per iteration (one GPU)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2000)
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.95, 0.99), weight_decay=0.01),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=0.01, total_steps=max_iters, pct_start=0.4,
         div_factor=10, final_div_factor=1e4, by_epoch=False),
]
default_hooks = dict(logger=dict(type='LoggerHook', interval=50),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000,
                                     max_keep_ckpts=3, save_best='teacher/ap3d/mAP',
                                     rule='greater'))
load_from = None  # the supervised checkpoint of the same labeled split
randomness = dict(seed=0)
log_processor = dict(by_epoch=False)
val_cfg = dict(type='TeacherStudentValLoop')
custom_hooks = [
    dict(type='SafeCheckpointHook'),
    dict(type='DataCheckHook'),
    dict(type='MeanTeacherHook', momentum_decay=0.9996, ramp_iters=2000, ramp_start=0.5,
         burn_in_iters=0),
    dict(type='PseudoLabelVisHook', interval=500),
]
