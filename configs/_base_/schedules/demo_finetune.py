# Stage 2 of the demo: continue from the stage-1 checkpoint (load_from) with stage 1's
# optimizer and learning rate (demo_pretrain.py), a short warm-up for the fresh momentum,
# one LR step at 75% and one evaluation at the end. The supervised and the semi-supervised
# continuations use this same schedule.
_base_ = ['./demo_pretrain.py']

max_iters = 1000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[int(max_iters * 0.75)], gamma=0.1),
]
