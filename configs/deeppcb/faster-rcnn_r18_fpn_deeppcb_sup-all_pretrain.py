# DeepPCB stage 1 on all 1,000 train scans (the oracle's pretraining).
_base_ = ['./faster-rcnn_r18_fpn_deeppcb_sup_pretrain.py']

train_dataloader = dict(dataset=dict(ann_file={{_base_.all_labeled_ann_file}}))
