# Stage 1 of the demo: supervised SGD from scratch at a constant learning rate (after a short
# warm-up), ending with one evaluation and one checkpoint; stage 2 (demo_finetune.py)
# continues from that checkpoint, supervised or semi-supervised.
max_iters = 1000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
]
