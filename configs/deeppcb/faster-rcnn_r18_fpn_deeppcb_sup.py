# DeepPCB stage 2, supervised: continue the stage-1 model on the same labeled scans for as many
# iterations, with the schedule and labeled-image augmentation of every stage-2 run: the
# baseline the semi-supervised runs must beat. The benchmark passes the stage-1 checkpoint.
_base_ = ['./deeppcb_base.py', '../_base_/schedules/demo_finetune.py']

max_iters = 500
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[int(max_iters * 0.75)], gamma=0.1),
]
train_dataloader = dict(dataset=dict(pipeline={{_base_.labeled_pipeline}}))
load_from = 'work_dirs/deeppcb/seed0/faster-rcnn_r18_fpn_deeppcb_sup_pretrain/iter_1200.pth'
