# Labeled + unlabeled demo scenes for teacher-student training: the labeled scenes get the
# supervised demo's augmentation; each unlabeled scene is loaded once and MultiBranch makes
# a weak view (teacher: flip) and a strong view (student: flip, rotation, scaling, point
# dropout; the HSSDA config adds the patch shuffle). Every geometric step composes
# lidar_aug_matrix, so the teacher's boxes map exactly into the student's view.
_base_ = ['./demo3d_detection.py']

dataset_type = 'PointCloudDataset'
data_root = 'data/demo3d/'
metainfo = {{_base_.metainfo}}
point_cloud_range = {{_base_.point_cloud_range}}
labeled_ann_file = 'semi_anns/train.1@10.json'
unlabeled_ann_file = 'semi_anns/train.1@10-unlabeled.json'

branch_field = ['sup', 'unsup_teacher', 'unsup_student']
view_meta_keys = ('frame_id', 'lidar_path', 'sample_idx', 'lidar_aug_matrix', 'num_points',
                  'flip_x', 'flip_y', 'bev_shuffle')

# the labeled scenes: exactly the supervised runs' augmentation
sup_pipeline = _base_.train_pipeline[:-1] + [
    dict(type='MultiBranch', branch_field=branch_field,
         sup=dict(type='PackPointCloudInputs')),
]
weak_pipeline = [
    dict(type='RandomFlip3D', flip_y_ratio=0.5),
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='PackPointCloudInputs', meta_keys=view_meta_keys),
]
strong_geometric = [
    dict(type='RandomFlip3D', flip_y_ratio=0.5),
    dict(type='GlobalRotScaleTrans', rot_range=[-0.7854, 0.7854], scale_range=[0.9, 1.1]),
    dict(type='PointDropout', drop_ratio=0.1),
]
strong_pipeline = strong_geometric + [
    dict(type='PointsRangeFilter', point_cloud_range=point_cloud_range),
    dict(type='PackPointCloudInputs', meta_keys=view_meta_keys),
]
unsup_pipeline = [
    dict(type='LoadPointsFromFile'),
    dict(type='MultiBranch', branch_field=branch_field,
         unsup_teacher=weak_pipeline, unsup_student=strong_pipeline),
]
labeled_dataset = dict(type=dataset_type, data_root=data_root, metainfo=metainfo,
                       ann_file=labeled_ann_file, pipeline=sup_pipeline)
unlabeled_dataset = dict(type=dataset_type, data_root=data_root, metainfo=metainfo,
                         ann_file=unlabeled_ann_file, pipeline=unsup_pipeline)
batch_size = 8
train_dataloader = dict(
    _delete_=True,
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='MultiSourceSampler', batch_size=batch_size, source_ratio=[1, 1]),
    # labeled and unlabeled scenes fill different branches: keep the absent ones as None
    collate_fn=dict(type='point_cloud_collate'),
    dataset=dict(type='ConcatDataset', datasets=[labeled_dataset, unlabeled_dataset]))
