"""An optimizer wrapper that skips steps with a non-finite loss or gradient."""
from typing import Dict, Optional

import torch
from mmengine.optim import OptimWrapper

from ssl_det.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class SkipNonFiniteOptimWrapper(OptimWrapper):
    """mmengine's ``OptimWrapper``, except that an update whose loss or gradient holds a NaN
    or an Inf is not applied: the gradients are zeroed and the optimizer (and, through
    :attr:`last_step_skipped`, the teacher's EMA update) leaves the weights as they were.

    The backward pass still runs on a non-finite loss, so that under DDP every rank takes
    part in the gradient all-reduce; the check then reads the reduced gradients, which are
    the same on every rank, so all ranks skip together without extra communication.

    ``NonFiniteGuardHook`` (added by tools/train.py) logs each skip with the losses that
    were not finite and stops the run after ``max_consecutive_skips`` skips in a row.
    ``tools/train.py`` uses this wrapper wherever a config names ``OptimWrapper``.

    Args:
        max_consecutive_skips (int): Skips in a row after which ``NonFiniteGuardHook``
            stops the run. Defaults to 10.
        *args, **kwargs: ``OptimWrapper``'s arguments.
    """

    def __init__(self, *args, max_consecutive_skips: int = 10, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(max_consecutive_skips, int) or max_consecutive_skips < 1:
            raise ValueError('max_consecutive_skips must be an int >= 1, got '
                             f'{max_consecutive_skips!r}')
        self.max_consecutive_skips = max_consecutive_skips
        self.last_step_skipped = False
        self.skip_reason = ''
        self.num_skipped = 0
        self.consecutive_skips = 0

    def update_params(self, loss: torch.Tensor, step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        step_kwargs = step_kwargs or {}
        zero_kwargs = zero_kwargs or {}
        finite_loss = bool(torch.isfinite(loss.detach()).all())
        self.backward(self.scale_loss(loss))
        if not self.should_update():
            self.last_step_skipped = False
            return
        if not finite_loss:
            self._skip('loss')
        elif not self.gradients_finite():
            self._skip('gradient')
        else:
            self.step(**step_kwargs)
            self.last_step_skipped, self.skip_reason = False, ''
            self.consecutive_skips = 0
        self.zero_grad(**zero_kwargs)

    def _skip(self, reason: str) -> None:
        self.last_step_skipped, self.skip_reason = True, reason
        self.num_skipped += 1
        self.consecutive_skips += 1

    @torch.no_grad()
    def gradients_finite(self) -> bool:
        """Whether every gradient of the optimizer's parameters is finite."""
        grads = [p.grad for group in self.optimizer.param_groups for p in group['params']
                 if p.grad is not None]
        if not grads:
            return True
        norms = torch._foreach_norm(grads)
        return bool(torch.isfinite(torch.stack(norms)).all())
