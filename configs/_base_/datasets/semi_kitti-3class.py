# KITTI 3-class, labeled + unlabeled frames for teacher-student training (3DIoUMatch /
# HSSDA's semi-supervised KITTI protocol). Prepare (data/README.md):
#   python tools/misc/split_point_cloud.py data/kitti/kitti_infos_train.json --percent 1 2 20 --folds 1 --out-dir data/kitti/semi_anns
#   python tools/dataset_converters/create_gt_database.py data/kitti/semi_anns/kitti_infos_train.1@{P}.json \
#       --out-dir data/kitti/gt_database_1@{P} --unlabeled-info-file data/kitti/semi_anns/kitti_infos_train.1@{P}-unlabeled.json
# The object database is built from the labeled split only. The split files and the database
# are named by `percent` (set by each config).
_base_ = ['./kitti-3class.py']

dataset_type = 'PointCloudDataset'
data_root = 'data/kitti/'
metainfo = {{_base_.metainfo}}
class_names = {{_base_.class_names}}
point_cloud_range = {{_base_.point_cloud_range}}
percent = 2
branch_field = ['sup', 'unsup_teacher', 'unsup_student']
view_meta_keys = ('frame_id', 'lidar_path', 'sample_idx', 'lidar_aug_matrix', 'num_points',
                  'flip_x', 'flip_y', 'bev_shuffle')

weak_pipeline = [
    dict(type='RandomFlip3D', flip_y_ratio=0.5),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='PackPointCloudInputs', meta_keys=view_meta_keys),
]
# HSSDA's student augmentation: flip, rotation +-pi/4, scaling 0.95-1.05, then the 2x2 shuffle
strong_pipeline = [
    dict(type='RandomFlip3D', flip_y_ratio=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.78539816, 0.78539816],
         scale_range=[0.95, 1.05]),
    dict(type='BEVPatchShuffle', point_cloud_range=point_cloud_range, grid=(2, 2)),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='PackPointCloudInputs', meta_keys=view_meta_keys),
]
unsup_pipeline = [
    dict(type='LoadPointsFromFile'),
    dict(type='MultiBranch', branch_field=branch_field,
         unsup_teacher=weak_pipeline, unsup_student=strong_pipeline),
]
batch_size = 8  # 4 labeled + 4 unlabeled frames per GPU
train_dataloader = dict(
    _delete_=True,
    batch_size=batch_size,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='MultiSourceSampler', batch_size=batch_size, source_ratio=[1, 1]),
    collate_fn=dict(type='point_cloud_collate'),
    dataset=dict(type='ConcatDataset', datasets=[
        dict(type=dataset_type, data_root=data_root, metainfo=metainfo, other_classes='drop',
             ann_file=f'semi_anns/kitti_infos_train.1@{percent}.json',
             pipeline=[_base_.train_pipeline[0],
                       dict(_base_.db_sampler,
                            db_info_file=f'{data_root}gt_database_1@{percent}/dbinfos.json')]
             + _base_.train_pipeline[2:-1]
             + [dict(type='MultiBranch', branch_field=branch_field,
                     sup=dict(type='PackPointCloudInputs'))]),
        dict(type=dataset_type, data_root=data_root, metainfo=metainfo, other_classes='drop',
             ann_file=f'semi_anns/kitti_infos_train.1@{percent}-unlabeled.json',
             pipeline=unsup_pipeline),
    ]))
