# Supervised PillarDetector on 10% of the demo scenes' frames (fold 1 of
# tools/misc/split_point_cloud.py): the baseline a semi-supervised run must beat.
_base_ = ['./pillar-center_demo3d_sup-all.py']

train_dataloader = dict(dataset=dict(ann_file='semi_anns/train.1@10.json'))
