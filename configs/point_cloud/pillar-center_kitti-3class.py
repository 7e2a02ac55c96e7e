# PillarDetector on KITTI 3-class: PointPillars-sized pillars (0.16 m) and BEV backbone, a
# centre-heatmap head, 80 epochs of AdamW with a one-cycle-like schedule (mmdet3d's
# PointPillars recipe). Needs data/kitti prepared as configs/_base_/datasets/kitti-3class.py says.
_base_ = ['../_base_/datasets/kitti-3class.py', '../_base_/default_runtime.py']

point_cloud_range = [0, -39.68, -3, 69.12, 39.68, 1]
voxel_size = [0.16, 0.16, 4]
model = dict(
    type='PillarDetector',
    data_preprocessor=dict(type='PointCloudDataPreprocessor'),
    voxelizer=dict(type='PillarVoxelizer', voxel_size=voxel_size,
                   point_cloud_range=point_cloud_range),
    voxel_encoder=dict(type='PillarFeatureNet', in_channels=4, feat_channels=64,
                       voxel_size=voxel_size, point_cloud_range=point_cloud_range),
    middle_encoder=dict(type='PillarScatter', in_channels=64),
    backbone=dict(type='BEVBackbone', in_channels=64, out_channels=(64, 128, 256),
                  layers=(3, 5, 5), strides=(2, 2, 2)),
    neck=dict(type='BEVNeck', in_channels=(64, 128, 256), out_channels=(128, 128, 128),
              upsample_strides=(1, 2, 4)),
    bbox_head=dict(type='CenterHead3D', in_channels=384, num_classes=3, feat_channels=64,
                   point_cloud_range=point_cloud_range, voxel_size=voxel_size,
                   out_size_factor=2,
                   loss_heatmap=dict(type='GaussianFocalLoss', loss_weight=1.0),
                   loss_bbox=dict(type='L1Loss', reduction='mean', loss_weight=0.25)),
    test_cfg=dict(max_per_img=500, score_thr=0.1, nms_thr=0.01, max_num=100))

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
