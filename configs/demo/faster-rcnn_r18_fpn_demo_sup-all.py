# Demo stage 2 on all train labels (the oracle): continue the stage-1 model
# (faster-rcnn_r18_fpn_demo_sup-all_pretrain.py) supervised, with the schedule of every
# stage-2 run and the labeled-image augmentation of the semi-supervised stage 2 (stage 1
# only flips). tools/demo.py passes the checkpoint of its own stage-1 run as load_from.
_base_ = [
    '../_base_/models/faster-rcnn_r18-narrow_fpn_demo.py',
    '../_base_/datasets/demo_detection.py',
    '../_base_/schedules/demo_finetune.py',
    '../_base_/demo_runtime.py',
]

load_from = 'work_dirs/demo/seed0/faster-rcnn_r18_fpn_demo_sup-all_pretrain/iter_1000.pth'

train_dataloader = dict(dataset=dict(pipeline={{_base_.labeled_pipeline}}))
