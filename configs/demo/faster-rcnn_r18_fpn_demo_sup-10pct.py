# Demo stage 2, supervised: continue the 10%-label stage-1 model on the same 10% of the
# labels for as many iterations as the semi-supervised stage 2 — the baseline the
# teacher-student runs must beat. tools/demo.py passes its stage-1 checkpoint as load_from.
_base_ = ['./faster-rcnn_r18_fpn_demo_sup-all.py']

train_dataloader = dict(dataset=dict(ann_file='semi_anns/instances_train.1@10.json'))
load_from = 'work_dirs/demo/seed0/faster-rcnn_r18_fpn_demo_sup-10pct_pretrain/iter_1000.pth'
