# Soft Teacher with Mask R-CNN R50-caffe FPN on COCO, 10% labels (fold 1): the Faster R-CNN
# recipe plus mmdet's mask head. The teacher's masks of confident pseudo boxes are warped into
# the strong view with their boxes and train the student's mask head (mmdet 3.x has no mask
# path in its semi-supervised code).
_base_ = ['./soft-teacher_faster-rcnn_r50-caffe_fpn_180k_semi-10pct-coco.py']

model = dict(
    data_preprocessor=dict(data_preprocessor=dict(pad_mask=True)),
    detector=dict(
        type='MaskRCNN',
        data_preprocessor=dict(pad_mask=True),
        roi_head=dict(
            mask_roi_extractor=dict(
                type='SingleRoIExtractor',
                roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
                out_channels=256,
                featmap_strides=[4, 8, 16, 32]),
            mask_head=dict(
                type='FCNMaskHead',
                num_convs=4,
                in_channels=256,
                conv_out_channels=256,
                num_classes=80,
                loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
        train_cfg=dict(rcnn=dict(mask_size=28)),
        test_cfg=dict(rcnn=dict(mask_thr_binary=0.5))))

# the labeled branch loads masks
sup_pipeline = _base_.sup_pipeline
sup_pipeline[1] = dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
labeled_dataset = _base_.labeled_dataset
labeled_dataset.pipeline = sup_pipeline
train_dataloader = dict(dataset=dict(datasets=[labeled_dataset, _base_.unlabeled_dataset]))

val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(save_best='teacher/coco/segm_mAP'))
