# The synthetic LiDAR demo scenes (tools/misc/make_demo_data.py --task 3d): KITTI-style
# .bin points and ssl_det info files; splits from tools/misc/split_point_cloud.py.
dataset_type = 'PointCloudDataset'
data_root = 'data/demo3d/'
class_names = ('Car', 'Pedestrian', 'Cyclist')
metainfo = dict(classes=class_names)
point_cloud_range = [0, -32, -3, 64, 32, 1]

# GT sampling (mmdet3d's ObjectSample; every 3D peer's labeled pipeline) for the
# *_gt-sample.py configs: labeled objects with their points pasted into each labeled scene
# until it holds the targets (the SECOND / PV-RCNN KITTI targets). The database comes from the
# 10% labeled split only (the oracle's configs set gt_database_train, from every frame);
# ensure_demo_gt_databases (ssl_det/datasets/demo_data_3d.py) builds both.
db_sampler = dict(
    type='ObjectSample',
    db_info_file=data_root + 'semi_anns/gt_database_1@10/dbinfos.json',
    classes=class_names,
    sample_groups=dict(Car=12, Pedestrian=6, Cyclist=6),
    min_points=dict(Car=5, Pedestrian=5, Cyclist=5))
train_pipeline = [
    dict(type='LoadPointsFromFile'),
    dict(type='RandomFlip3D', flip_y_ratio=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.3927, 0.3927], scale_range=[0.95, 1.05]),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='ObjectRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='PointShuffle'),
    dict(type='PackPointCloudInputs'),
]
test_pipeline = [
    dict(type='LoadPointsFromFile'),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='PackPointCloudInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='train.json',
                 metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='val.json',
                 metainfo=metainfo, test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
# 3D and BEV AP per class at KITTI's thresholds (Car 0.7, Pedestrian/Cyclist 0.5) and the
# loose ones (0.5 / 0.25 / 0.25), R40 and R11. 'ap3d/mAP', the demo's headline, is 3D AP
# averaged over the classes at the loose set, R40 (the strict set is logged too).
val_evaluator = dict(
    type='Box3DAPMetric',
    iou_thresholds=[dict(Car=0.7, Pedestrian=0.5, Cyclist=0.5),
                    dict(Car=0.5, Pedestrian=0.25, Cyclist=0.25)],
    primary='3d/mAP@set1/R40')
test_evaluator = val_evaluator
