# DeepPCB stage 2 on all labels (the oracle): the stage-2 supervised run on the 1,000 train
# scans, from the all-label stage-1 checkpoint.
_base_ = ['./faster-rcnn_r18_fpn_deeppcb_sup.py']

train_dataloader = dict(dataset=dict(ann_file={{_base_.all_labeled_ann_file}}))
load_from = 'work_dirs/deeppcb/seed0/faster-rcnn_r18_fpn_deeppcb_sup-all_pretrain/iter_1200.pth'
