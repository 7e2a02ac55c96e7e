# ssl_det's runtime defaults: mmdet's, in ssl_det's scope (bare names build ssl_det's
# classes first, every mmdet module is still found), plus the hooks every run needs.
_base_ = ['mmdet::_base_/default_runtime.py']

default_scope = 'ssl_det'
custom_hooks = [
    dict(type='SafeCheckpointHook'),  # checkpoints load with torch.load(weights_only=True)
    dict(type='DataCheckHook'),  # empty splits, missing images, category mismatches
]
# Full unpickling of third-party checkpoints (load_from / resume) only when set to True.
trust_checkpoint = False
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=False)
