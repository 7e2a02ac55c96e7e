# KITTI 3-class (Car, Pedestrian, Cyclist) LiDAR detection. Prepare with
#   python tools/dataset_converters/kitti_to_ssl_det.py data/kitti --out data/kitti/kitti_infos_train.json --split-file data/kitti/ImageSets/train.txt
#   python tools/dataset_converters/kitti_to_ssl_det.py data/kitti --out data/kitti/kitti_infos_val.json --split-file data/kitti/ImageSets/val.txt
#   python tools/dataset_converters/create_gt_database.py data/kitti/kitti_infos_train.json --out-dir data/kitti/gt_database_train
# (data/README.md). mmdet3d 1.x's kitti_infos_*.pkl load unchanged too: set ann_file to them
# and data_prefix=dict(pts='training/velodyne_reduced').
dataset_type = 'PointCloudDataset'
data_root = 'data/kitti/'
class_names = ('Car', 'Pedestrian', 'Cyclist')
metainfo = dict(classes=class_names)
point_cloud_range = [0, -39.68, -3, 69.12, 39.68, 1]

db_sampler = dict(
    type='ObjectSample',
    # built from the LABELED split's info file only (a database of every frame leaks the
    # unlabeled frames' labels into semi-supervised training)
    db_info_file=data_root + 'gt_database_train/dbinfos.json',
    classes=class_names,
    sample_groups=dict(Car=15, Pedestrian=10, Cyclist=10),
    min_points=dict(Car=5, Pedestrian=5, Cyclist=5))
train_pipeline = [
    dict(type='LoadPointsFromFile'),
    db_sampler,
    dict(type='RandomFlip3D', flip_y_ratio=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.78539816, 0.78539816],
         scale_range=[0.95, 1.05]),
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
    batch_size=6,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='kitti_infos_train.json',
                 metainfo=metainfo, other_classes='drop', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='kitti_infos_val.json',
                 metainfo=metainfo, other_classes='drop', test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
# KITTI's official protocol: 3D and BEV AP at 0.7/0.5/0.5 (and 0.5/0.25/0.25), R40 and R11,
# per difficulty; 'mAP' is 3D, moderate, R40 at the official thresholds.
val_evaluator = dict(
    type='Box3DAPMetric',
    iou_thresholds=[dict(Car=0.7, Pedestrian=0.5, Cyclist=0.5),
                    dict(Car=0.5, Pedestrian=0.25, Cyclist=0.25)],
    recall_points=(40, 11),
    difficulties=(0, 1, 2),
    primary='3d/mAP@set0/R40/moderate')
test_evaluator = val_evaluator
