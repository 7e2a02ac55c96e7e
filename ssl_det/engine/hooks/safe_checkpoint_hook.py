"""Writes checkpoints that load with ``torch.load(weights_only=True)``."""
from mmengine.hooks import Hook

from ssl_det.registry import HOOKS
from ssl_det.utils.checkpoint import to_weights_only


@HOOKS.register_module()
class SafeCheckpointHook(Hook):
    """Rewrite mmengine's checkpoint content (history buffers, numpy values) into tensors and
    plain containers right before it is saved.

    It runs last among ``before_save_checkpoint`` hooks so that what other hooks add is
    rewritten too. ssl_det's configs and ``tools/train.py`` add it; the loader side is
    :func:`ssl_det.utils.checkpoint.load_checkpoint_file`.
    """

    priority = 'LOWEST'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        safe = to_weights_only(checkpoint)
        checkpoint.clear()
        checkpoint.update(safe)
