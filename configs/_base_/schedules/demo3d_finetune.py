# Stage 2 of the 3D demo protocol (supervised or semi-supervised, continuing the stage-1
# checkpoint): the stage-1 optimizer at half its learning rate, a short warm-up and a step at
# 75% of the iterations.
_base_ = ['./demo3d.py']

max_iters = 1000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.75)], gamma=0.1),
]
