# PillarDetector for the synthetic demo scenes (tools/misc/make_demo_data.py --task 3d):
# 0.4 m pillars over 64 x 64 m in front of the sensor, a three-stage BEV backbone, a
# centre-heatmap head at stride 2 (0.8 m cells). Sized to train on a 2-core CPU.
# The head regresses the heading's axis (sin 2 yaw, cos 2 yaw) apart from its direction
# (sin, cos): a front and a back that the head cannot tell apart then flip a box instead of
# turning it in between (3D demo, 3 seeds: docs/benchmarks.md).
# Each pillar also carries its height profile (`height_bins=16`: its share of points in each
# 0.25 m slice of the 4 m z range), which a max over its points loses: a post is as dense at
# its top as at its foot, a person is not. It lifts the supervised model, the oracle and the
# teacher on every seed (docs/benchmarks.md). The BEV input is then 32 + 16 channels.
pillar_range = [0, -32, -3, 64, 32, 1]
pillar_size = [0.4, 0.4, 4]
model = dict(
    type='PillarDetector',
    data_preprocessor=dict(type='BaseDataPreprocessor'),
    voxelizer=dict(type='PillarVoxelizer', voxel_size=pillar_size,
                   point_cloud_range=pillar_range),
    voxel_encoder=dict(type='PillarFeatureNet', in_channels=4, feat_channels=32,
                       voxel_size=pillar_size, point_cloud_range=pillar_range, height_bins=16),
    middle_encoder=dict(type='PillarScatter', in_channels=48),
    backbone=dict(type='BEVBackbone', in_channels=48, out_channels=(32, 64, 128),
                  layers=(1, 2, 2), strides=(2, 2, 2)),
    neck=dict(type='BEVNeck', in_channels=(32, 64, 128), out_channels=(64, 64, 64),
              upsample_strides=(1, 2, 4)),
    bbox_head=dict(type='CenterHead3D', in_channels=192, num_classes=3, feat_channels=64,
                   point_cloud_range=pillar_range, voxel_size=pillar_size,
                   out_size_factor=2, heading='double_angle',
                   loss_heatmap=dict(type='GaussianFocalLoss', loss_weight=1.0),
                   loss_bbox=dict(type='L1Loss', reduction='mean', loss_weight=0.25)),
    test_cfg=dict(max_per_img=100, score_thr=0.1, nms_thr=0.1, max_num=50))
