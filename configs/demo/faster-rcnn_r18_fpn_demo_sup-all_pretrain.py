# Demo stage 1 on all train labels (the oracle's pretraining): Faster R-CNN R18-FPN
# (narrow) from scratch, 4 labeled images per iteration.
_base_ = [
    '../_base_/models/faster-rcnn_r18-narrow_fpn_demo.py',
    '../_base_/datasets/demo_detection.py',
    '../_base_/schedules/demo_pretrain.py',
    '../_base_/demo_runtime.py',
]
