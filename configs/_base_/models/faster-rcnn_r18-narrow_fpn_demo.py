# Faster R-CNN for 128-px CPU training from scratch: ResNet-18 at half width, a 64-channel
# FPN, anchors sized for 10-40 px objects, and proposal/RoI counts cut so that mmcv's CPU
# RoIAlign (most of a CPU step at mmdet's defaults) stays affordable.
_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py']

num_classes = 5
model = dict(
    backbone=dict(
        depth=18,
        base_channels=32,
        frozen_stages=-1,
        norm_eval=False,  # trained from scratch: BN statistics must follow the data
        init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(
        in_channels=64,
        feat_channels=64,
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2),
            out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=256),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(score_thr=0.05, max_per_img=50)))
