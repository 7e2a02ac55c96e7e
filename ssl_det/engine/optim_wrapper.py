"""An optimizer wrapper that skips steps with a non-finite loss or an exploding gradient."""
import collections
import math
from typing import Dict, Optional

import torch
from mmengine.optim import OptimWrapper

from ssl_det.registry import OPTIM_WRAPPERS


# A step's gradient norm above this many times the recent median is a spike: normal steps
# vary by a few times (see docs/benchmarks.md, "A config ported from mmdet").
SPIKE_RATIO = 50.0


@OPTIM_WRAPPERS.register_module()
class SkipNonFiniteOptimWrapper(OptimWrapper):
    """mmengine's ``OptimWrapper``, except that an update whose loss or gradient holds a NaN
    or an Inf is not applied: the gradients are zeroed and the optimizer (and, through
    :attr:`last_step_skipped`, the teacher's EMA update) leaves the weights as they were.

    A finite gradient can break the weights as surely as a NaN: one step with a gradient a
    thousand times the usual size throws the weights so far that the next forward pass is
    NaN, and skipping *that* step comes too late. So a step whose gradient norm (before any
    ``clip_grad``) exceeds ``spike_ratio`` times the median norm of the last
    ``spike_window`` applied steps is skipped too (reason ``'gradient spike'``), once
    ``spike_min_steps`` steps have been applied to measure the median. The norm of every
    step is kept in :attr:`last_grad_norm` (``NonFiniteGuardHook`` logs it as
    ``train/grad_norm``).

    The backward pass still runs on a non-finite loss, so that under DDP every rank takes
    part in the gradient all-reduce; the check then reads the reduced gradients, which are
    the same on every rank, so all ranks skip together without extra communication.

    ``NonFiniteGuardHook`` (added by tools/train.py) logs each skip with the losses that
    were not finite and stops the run after ``max_consecutive_skips`` skips in a row.
    ``tools/train.py`` uses this wrapper wherever a config names ``OptimWrapper``.

    Args:
        max_consecutive_skips (int): Skips in a row after which ``NonFiniteGuardHook``
            stops the run. Defaults to 10.
        spike_ratio (float, optional): Skip a step whose gradient norm is more than this
            many times the recent median; None never skips a finite gradient.
            Defaults to SPIKE_RATIO.
        spike_window (int): Applied steps whose norms give the median. Defaults to 50.
        spike_min_steps (int): Applied steps before spikes are looked for. Defaults to 20.
        *args, **kwargs: ``OptimWrapper``'s arguments.
    """

    def __init__(self, *args, max_consecutive_skips: int = 10,
                 spike_ratio: Optional[float] = SPIKE_RATIO, spike_window: int = 50,
                 spike_min_steps: int = 20, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(max_consecutive_skips, int) or max_consecutive_skips < 1:
            raise ValueError('max_consecutive_skips must be an int >= 1, got '
                             f'{max_consecutive_skips!r}')
        if spike_ratio is not None and not spike_ratio > 1:
            raise ValueError(f'spike_ratio must be > 1 or None, got {spike_ratio!r}')
        if not isinstance(spike_window, int) or spike_window < 1:
            raise ValueError(f'spike_window must be an int >= 1, got {spike_window!r}')
        if not isinstance(spike_min_steps, int) or not 1 <= spike_min_steps:
            raise ValueError(f'spike_min_steps must be an int >= 1, got {spike_min_steps!r}')
        self.max_consecutive_skips = max_consecutive_skips
        self.spike_ratio = spike_ratio
        self.spike_min_steps = spike_min_steps
        self.recent_norms = collections.deque(maxlen=spike_window)
        self.last_grad_norm = float('nan')
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
        self.last_grad_norm = norm = self.grad_norm()
        if not finite_loss:
            self._skip('loss')
        elif not math.isfinite(norm):
            self._skip('gradient')
        elif self.is_spike(norm):
            self._skip('gradient spike')
        else:
            self.step(**step_kwargs)
            self.recent_norms.append(norm)
            self.last_step_skipped, self.skip_reason = False, ''
            self.consecutive_skips = 0
        self.zero_grad(**zero_kwargs)

    def recent_median(self) -> float:
        """The median gradient norm of the last ``spike_window`` applied steps."""
        ordered = sorted(self.recent_norms)
        return ordered[len(ordered) // 2] if ordered else float('nan')

    def is_spike(self, norm: float) -> bool:
        """Whether a finite gradient norm is ``spike_ratio`` times the recent median."""
        if self.spike_ratio is None or len(self.recent_norms) < self.spike_min_steps:
            return False
        return norm > self.spike_ratio * self.recent_median()

    def _skip(self, reason: str) -> None:
        self.last_step_skipped, self.skip_reason = True, reason
        self.num_skipped += 1
        self.consecutive_skips += 1

    @torch.no_grad()
    def grad_norm(self) -> float:
        """The L2 norm of all the optimizer's gradients together (NaN or Inf when one of
        them is not finite; 0 without gradients)."""
        grads = [p.grad for group in self.optimizer.param_groups for p in group['params']
                 if p.grad is not None]
        if not grads:
            return 0.0
        norms = torch._foreach_norm(grads)
        return float(torch.linalg.vector_norm(torch.stack(norms).double()))
