# Soft Teacher's "full" setting: all of COCO train2017 labeled + unlabeled2017 (123k
# images), the paper's 720k-iteration schedule (learning rate / 10 at 480k and 680k).
_base_ = ['./soft-teacher_mask-rcnn_r50-caffe_fpn_180k_semi-10pct-coco.py']

labeled_dataset = _base_.labeled_dataset
unlabeled_dataset = _base_.unlabeled_dataset
labeled_dataset.ann_file = 'annotations/instances_train2017.json'
unlabeled_dataset.ann_file = 'annotations/image_info_unlabeled2017.json'
unlabeled_dataset.data_prefix = dict(img='unlabeled2017/')
train_dataloader = dict(dataset=dict(datasets=[labeled_dataset, unlabeled_dataset]))

max_iters = 720000
train_cfg = dict(max_iters=max_iters, val_interval=20000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[480000, 680000], gamma=0.1),
]
