# The demo runs' runtime: ssl_det's defaults, a log line every 20 iterations and one
# checkpoint, at the end of the run (stage 2 continues from stage 1's).
_base_ = ['./default_runtime.py']

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=-1, save_last=True,
                    max_keep_ckpts=1))
