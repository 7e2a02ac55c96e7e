# PillarDetector for KITTI: PointPillars-sized pillars (0.16 m) over KITTI's front range and
# BEV backbone (64/128/256 channels), a centre-heatmap head at stride 2.
pillar_range = [0, -39.68, -3, 69.12, 39.68, 1]
pillar_size = [0.16, 0.16, 4]
model = dict(
    type='PillarDetector',
    data_preprocessor=dict(type='PointCloudDataPreprocessor'),
    voxelizer=dict(type='PillarVoxelizer', voxel_size=pillar_size,
                   point_cloud_range=pillar_range),
    voxel_encoder=dict(type='PillarFeatureNet', in_channels=4, feat_channels=64,
                       voxel_size=pillar_size, point_cloud_range=pillar_range),
    middle_encoder=dict(type='PillarScatter', in_channels=64),
    backbone=dict(type='BEVBackbone', in_channels=64, out_channels=(64, 128, 256),
                  layers=(3, 5, 5), strides=(2, 2, 2)),
    neck=dict(type='BEVNeck', in_channels=(64, 128, 256), out_channels=(128, 128, 128),
              upsample_strides=(1, 2, 4)),
    bbox_head=dict(type='CenterHead3D', in_channels=384, num_classes=3, feat_channels=64,
                   point_cloud_range=pillar_range, voxel_size=pillar_size,
                   out_size_factor=2,
                   loss_heatmap=dict(type='GaussianFocalLoss', loss_weight=1.0),
                   loss_bbox=dict(type='L1Loss', reduction='mean', loss_weight=0.25)),
    test_cfg=dict(max_per_img=500, score_thr=0.1, nms_thr=0.01, max_num=100))
