# Soft Teacher with a three-stage Cascade R-CNN on the demo data (10% labeled): the
# Faster R-CNN demo config with mmdet's cascade RoI head at demo width. Both Soft Teacher
# losses apply at every stage (soft background weights with the teacher's cascade-averaged
# background score; regression on low-uncertainty boxes).
_base_ = ['./soft-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py']


def stage_head(stds):
    return dict(
        type='Shared2FCBBoxHead', in_channels=64, fc_out_channels=256, roi_feat_size=7,
        num_classes=5, reg_class_agnostic=True,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                        target_stds=stds),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))


def stage_train_cfg(iou):
    return dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou,
                      min_pos_iou=iou, match_low_quality=False, ignore_iof_thr=0.5),
        sampler=dict(type='RandomSampler', num=64, pos_fraction=0.25, neg_pos_ub=-1,
                     add_gt_as_proposals=True),
        mask_size=28, pos_weight=-1, debug=False)


model = dict(detector=dict(
    type='CascadeRCNN',
    roi_head=dict(
        _delete_=True,
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2),
            out_channels=64,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=[stage_head([0.1, 0.1, 0.2, 0.2]), stage_head([0.05, 0.05, 0.1, 0.1]),
                   stage_head([0.033, 0.033, 0.067, 0.067])]),
    train_cfg=dict(rcnn=[stage_train_cfg(0.5), stage_train_cfg(0.6), stage_train_cfg(0.7)])))
