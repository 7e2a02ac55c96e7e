# Supervised baseline on the demo data: Faster R-CNN R18-FPN (narrow) on all train labels.
_base_ = [
    '../_base_/models/faster-rcnn_r18-narrow_fpn_demo.py',
    '../_base_/datasets/demo_detection.py',
    '../_base_/schedules/demo_500it.py',
    '../_base_/default_runtime.py',
]

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval={{_base_.max_iters}},
                    max_keep_ckpts=1))
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(enable=False, base_batch_size=4)
