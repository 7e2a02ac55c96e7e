# Supervised baseline on 10% of the demo labels (fold 1 of tools/misc/split_coco.py).
_base_ = ['./faster-rcnn_r18_fpn_demo_sup-all.py']

train_dataloader = dict(dataset=dict(ann_file='semi_anns/instances_train.1@10.json'))
