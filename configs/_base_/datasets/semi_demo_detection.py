# Labeled + unlabeled demo data for teacher-student training: a weak view (teacher) and a
# strong view (student) of every unlabeled image; every geometric step records
# `homography_matrix` so pseudo boxes map exactly between the views.
_base_ = ['./demo_detection.py']

dataset_type = 'CocoDataset'
data_root = 'data/demo/'
metainfo = {{_base_.metainfo}}
image_size = {{_base_.image_size}}
backend_args = None
labeled_ann_file = 'semi_anns/instances_train.1@10.json'
unlabeled_ann_file = 'semi_anns/instances_train.1@10-unlabeled.json'

color_space = {{_base_.color_space}}
geometric = [
    [dict(type='Rotate', max_mag=30.0)],
    [dict(type='ShearX')],
    [dict(type='ShearY')],
    [dict(type='TranslateX', max_mag=0.1)],
    [dict(type='TranslateY', max_mag=0.1)],
]
branch_field = ['sup', 'unsup_teacher', 'unsup_student']
view_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                  'flip_direction', 'homography_matrix')

# the labeled images: the same augmentation as every supervised stage-2 run
sup_pipeline = _base_.labeled_pipeline[:-1] + [
    dict(type='MultiBranch', branch_field=branch_field, sup=dict(type='PackDetInputs')),
]
weak_pipeline = [
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs', meta_keys=view_meta_keys),
]
strong_pipeline = [
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomOrder', transforms=[
        dict(type='RandAugment', aug_space=color_space, aug_num=1),
        dict(type='RandAugment', aug_space=geometric, aug_num=1),
    ]),
    dict(type='AlbuPhotometric'),
    dict(type='RandomErasing', n_patches=(1, 3), ratio=(0, 0.15)),
    dict(type='PackDetInputs', meta_keys=view_meta_keys),
]
unsup_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadEmptyAnnotations'),
    dict(type='MultiBranch', branch_field=branch_field,
         unsup_teacher=weak_pipeline, unsup_student=strong_pipeline),
]

labeled_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    metainfo=metainfo,
    ann_file=labeled_ann_file,
    data_prefix=dict(img='images/'),
    filter_cfg=dict(filter_empty_gt=True, min_size=4),
    pipeline=sup_pipeline,
    backend_args=backend_args)
unlabeled_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    metainfo=metainfo,
    ann_file=unlabeled_ann_file,
    data_prefix=dict(img='images/'),
    filter_cfg=dict(filter_empty_gt=False),
    pipeline=unsup_pipeline,
    backend_args=backend_args)

batch_size = 8
train_dataloader = dict(
    _delete_=True,
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='MultiSourceSampler', batch_size=batch_size, source_ratio=[1, 1]),
    dataset=dict(type='ConcatDataset', datasets=[labeled_dataset, unlabeled_dataset]))
