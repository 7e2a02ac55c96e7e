# DeepPCB (real 640x640 binarised PCB scans, six defect classes; ../shared/data/deeppcb, see
# data/README.md): what every run of configs/deeppcb/ shares. The data itself (data root,
# classes, annotation files, scale) is set in ONE place, ./data.py, the file a user's copy
# of this folder rewrites; the dataloaders, the evaluator and num_classes of the detector and
# of the pseudo-label policy follow from it here.
#
# Detector: the demo's narrow Faster R-CNN R18-FPN from scratch (no pretrained weights).
# Scale: the scans are resized 640 -> 320 (half their resolution). The defects are 20-173 px
# at full resolution (median 35x33), so 10-87 px (median 17) at 320: the demo anchors
# (scale 4 on strides 4-64: 16, 32, 64, 128, 256 px) cover them from P2 up.
# Crops: training sees random 192x192 crops of the 320-px scans (about 2.5 defects each);
# testing sees whole scans. On 2 CPU cores a 320-px step costs about 3x a 192-px crop's
# (convolutions dominate), and 4 crops per iteration keep 4 images' worth of variety.
# Unlabeled scans are cropped once, before the weak and strong views are made, so both views
# show the same region and the crop cancels in the weak -> strong mapping.
_base_ = [
    './data.py',
    '../_base_/models/faster-rcnn_r18-narrow_fpn_demo.py',
    '../_base_/demo_runtime.py',
]

data_root = _base_.data_root
classes = _base_.classes
image_prefix = _base_.image_prefix
image_size = _base_.image_size
crop_size = _base_.crop_size

num_classes = len(classes)
metainfo = dict(classes=classes)
model = dict(roi_head=dict(bbox_head=dict(num_classes=num_classes)))
dataset_type = 'CocoDataset'
backend_args = None

# stage 1: crops and flips. A crop holds at least one (part of a) defect; boxes cut to
# slivers under 4 px by the crop are dropped.
crop_steps = [
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, allow_negative_crop=False),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(4, 4)),
]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    *crop_steps,
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
# stage 2's labeled images, supervised or semi-supervised: flips and one photometric change.
# No Solarize (mmdet's and the demo's colour space have it): it inverts every pixel above a
# random level, which blanks a binarised scan (white pixels 86% -> 0.1% on DeepPCB) and left
# one labeled crop and one strong view in nine black with its defects still labeled. On
# your own data, look at what each operation does to a few of your images first.
color_space = [
    [dict(type='ColorTransform')],
    [dict(type='AutoContrast')],
    [dict(type='Equalize')],
    [dict(type='Sharpness')],
    [dict(type='Posterize')],
    [dict(type='Color')],
    [dict(type='Contrast')],
    [dict(type='Brightness')],
]
labeled_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    *crop_steps,
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandAugment', aug_space=color_space, aug_num=1),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
labeled_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    metainfo=metainfo,
    ann_file=_base_.labeled_ann_file,
    data_prefix=dict(img=image_prefix),
    filter_cfg=dict(filter_empty_gt=True, min_size=4),
    pipeline=train_pipeline,
    backend_args=backend_args)
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=labeled_dataset)
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file=_base_.val_ann_file,
        data_prefix=dict(img=image_prefix),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + _base_.val_ann_file,
    metric='bbox',
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
auto_scale_lr = dict(enable=False, base_batch_size=4)

# Semi-supervised stage 2: the labeled images in the `sup` branch (stage 2's augmentation);
# each unlabeled image loaded once, a weak view for the teacher and a strong view for the
# student; every geometric step records `homography_matrix`, so pseudo boxes map exactly.
branch_field = ['sup', 'unsup_teacher', 'unsup_student']
view_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                  'flip_direction', 'homography_matrix')
geometric = [
    [dict(type='Rotate', max_mag=30.0)],
    [dict(type='ShearX')],
    [dict(type='ShearY')],
    [dict(type='TranslateX', max_mag=0.1)],
    [dict(type='TranslateY', max_mag=0.1)],
]
weak_pipeline = [
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs', meta_keys=view_meta_keys),
]
strong_pipeline = [
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomOrder', transforms=[
        dict(type='RandAugment', aug_space=color_space, aug_num=1),
        dict(type='RandAugment', aug_space=geometric, aug_num=1),
    ]),
    dict(type='AlbuPhotometric'),
    dict(type='RandomErasing', n_patches=(1, 3), ratio=(0, 0.15)),
    dict(type='PackDetInputs', meta_keys=view_meta_keys),
]
# Each iteration: the 4 labeled crops of the supervised runs + 12 unlabeled crops (1:3;
# mmdet's Soft Teacher uses 1:4). More unlabeled crops at the same unsupervised weight
# average the pseudo labels' noise over more images: 8 instead of 4 gained 0.010-0.019 mAP
# on every seed, 12 instead of 8 +0.005 on average (never less), where doubling the weight
# instead lost 0.033 (docs/benchmarks.md). 1.0-1.3 s an iteration on 2 cores, 9-12 minutes a
# run with its evaluations as the machine's speed varies; 16 (1:4) took 12.6 minutes on a
# day 12 took 9.2, over the protocol's 10.
semi_train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='MultiSourceSampler', batch_size=16, source_ratio=[1, 3]),
    dataset=dict(type='ConcatDataset', datasets=[
        dict(labeled_dataset, pipeline=labeled_pipeline[:-1] + [
            dict(type='MultiBranch', branch_field=branch_field,
                 sup=dict(type='PackDetInputs'))]),
        dict(type=dataset_type,
             data_root=data_root,
             metainfo=metainfo,
             ann_file=_base_.unlabeled_ann_file,
             data_prefix=dict(img=image_prefix),
             filter_cfg=dict(filter_empty_gt=False),
             pipeline=[
                 dict(type='LoadImageFromFile', backend_args=backend_args),
                 dict(type='LoadEmptyAnnotations'),
                 dict(type='Resize', scale=image_size, keep_ratio=True),
                 dict(type='RandomCrop', crop_size=crop_size, allow_negative_crop=True),
                 dict(type='MultiBranch', branch_field=branch_field,
                      unsup_teacher=weak_pipeline, unsup_student=strong_pipeline),
             ],
             backend_args=backend_args),
    ]))
