# PillarDetector on KITTI 3-class: PointPillars-sized pillars (0.16 m) and BEV backbone, a
# centre-heatmap head, 80 epochs of AdamW with a one-cycle-like schedule (mmdet3d's
# PointPillars recipe). Needs data/kitti prepared as configs/_base_/datasets/kitti-3class.py says.
_base_ = ['../_base_/models/pillar-center_kitti.py', '../_base_/datasets/kitti-3class.py',
          '../_base_/default_runtime.py']

max_epochs = 80
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=2)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
lr = 0.001
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, betas=(0.95, 0.99), weight_decay=0.01),
    clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs * 0.4, eta_min=lr * 10, begin=0,
         end=max_epochs * 0.4, by_epoch=True, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs * 0.6, eta_min=lr * 1e-4,
         begin=max_epochs * 0.4, end=max_epochs, by_epoch=True, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=3,
                                     save_best='ap3d/mAP', rule='greater'))
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=6)
