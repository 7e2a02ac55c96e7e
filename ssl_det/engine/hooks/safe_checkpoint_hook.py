"""Writes checkpoints that load with ``torch.load(weights_only=True)`` and hold finite
weights."""
import torch
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

    A checkpoint whose weights hold a NaN or an Inf is never written: the save stops the run
    with the tensors named, and the previous checkpoint stays the latest.
    """

    priority = 'LOWEST'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        bad = [k for k, v in checkpoint.get('state_dict', {}).items()
               if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise RuntimeError(
                f'refusing to save a checkpoint at iteration {runner.iter}: {len(bad)} '
                f'tensors hold NaN or Inf (e.g. {bad[:5]}). The last checkpoint written '
                'before this one holds finite weights; resume from it with a lower learning '
                'rate, or look for the first non-finite loss in the log.')
        safe = to_weights_only(checkpoint)
        checkpoint.clear()
        checkpoint.update(safe)
