# Demo stage 1: supervised from scratch on 10% of the demo labels (fold 1 of
# tools/misc/split_coco.py). Both stage-2 runs of the demo, supervised and
# semi-supervised, start from its checkpoint.
_base_ = ['./faster-rcnn_r18_fpn_demo_sup-all_pretrain.py']

train_dataloader = dict(dataset=dict(ann_file='semi_anns/instances_train.1@10.json'))
