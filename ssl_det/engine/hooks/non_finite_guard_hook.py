"""Log, count and bound the optimizer steps skipped for a non-finite loss or gradient, or a
gradient spike."""
import logging
import math
from typing import List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ssl_det.registry import HOOKS

LIKELY_CAUSES = (
    'a learning rate too high for this batch size (lower it or lengthen the warm-up); '
    'degenerate or corrupt boxes in the labels (zero or negative size, NaN coordinates: '
    'run tools/train.py once with DataCheckHook, which checks them at start-up); '
    'a teacher whose pseudo boxes became degenerate (unsup_* losses only: raise the '
    'thresholds or lengthen the burn-in); fp16 overflow under --amp')


@HOOKS.register_module()
class NonFiniteGuardHook(Hook):
    """Make a non-finite loss or gradient cost one iteration, not the run.

    With ``SkipNonFiniteOptimWrapper`` (tools/train.py uses it for ``OptimWrapper``) a step
    whose loss or gradient is not finite is not applied. This hook then:

    * restores the trained network's floating-point buffers (the student's in a
      teacher-student model: BN running statistics) to what they were before the
      iteration's forward pass, which may already have blended NaN into them;
    * logs a warning with the iteration and the losses that were not finite (or the spike's
      norm against the recent median), and the count as ``train/nonfinite_skips`` (also
      ``MeanTeacherHook`` skips its EMA update);
    * after the wrapper's ``max_consecutive_skips`` skips in a row, stops the run with an
      error naming those losses and the likely causes.

    Every step's gradient norm (before clipping) is logged as ``train/grad_norm``, as
    mmengine logs it with ``clip_grad``.

    The wrapper's counts (skips in the run, skips in a row) are saved in every checkpoint
    (``ssl_det_counters``) and restored when the run resumes (not after ``load_from``, which
    starts a new run), so the logged total and the bound continue where they were.

    Without that wrapper (``AmpOptimWrapper`` has its own loss scaler) it does nothing.
    """

    priority = 'HIGH'  # restore the buffers before other hooks read the model

    def __init__(self) -> None:
        self._buffers: Optional[List[torch.Tensor]] = None
        self._saved: Optional[List[torch.Tensor]] = None
        self._resumed: Optional[dict] = None  # counts loaded before the wrapper was built

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        wrapper = self._wrapper(runner)
        if wrapper is None:
            return
        # plain ints: the checkpoint still loads with torch.load(weights_only=True)
        checkpoint.setdefault('ssl_det_counters', {}).update(
            nonfinite_skips=int(wrapper.num_skipped),
            nonfinite_consecutive_skips=int(wrapper.consecutive_skips))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        counters = checkpoint.get('ssl_det_counters') or {}
        if getattr(runner, '_resume', False) and 'nonfinite_skips' in counters:
            self._resumed = dict(
                num_skipped=int(counters['nonfinite_skips']),
                consecutive_skips=int(counters.get('nonfinite_consecutive_skips', 0)))
            self._restore(runner)

    def before_train(self, runner) -> None:
        self._restore(runner)

    def _restore(self, runner) -> None:
        wrapper = self._wrapper(runner)
        if self._resumed is not None and wrapper is not None:
            for name, value in self._resumed.items():
                setattr(wrapper, name, value)
            self._resumed = None

    @staticmethod
    def _wrapper(runner):
        wrapper = getattr(runner, 'optim_wrapper', None)
        return wrapper if hasattr(wrapper, 'last_step_skipped') else None

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._wrapper(runner) is None:
            return
        if self._buffers is None:
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            trained = getattr(model, 'student', model)  # a teacher-student's trained network
            self._buffers = [b for b in trained.buffers() if b.is_floating_point()]
            self._saved = [b.detach().clone() for b in self._buffers]
        elif self._buffers:
            torch._foreach_copy_(self._saved, self._buffers)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        wrapper = self._wrapper(runner)
        if wrapper is None:
            return
        runner.message_hub.update_scalar('train/nonfinite_skips', float(wrapper.num_skipped))
        norm = getattr(wrapper, 'last_grad_norm', float('nan'))
        if math.isfinite(norm) and not (wrapper.clip_grad_kwargs and
                                        not wrapper.last_step_skipped):
            # with clip_grad, mmengine's step logs the same norm itself
            runner.message_hub.update_scalar('train/grad_norm', norm)
        if not wrapper.last_step_skipped:
            return
        if self._buffers:
            with torch.no_grad():
                torch._foreach_copy_(self._buffers, self._saved)
        if wrapper.skip_reason == 'gradient spike':
            median = wrapper.recent_median()
            what = 'gradient spike'
            named = (f'gradient norm {norm:.4g}, {norm / median:.0f}x the median '
                     f'{median:.4g} of the last {len(wrapper.recent_norms)} steps; '
                     f'optim_wrapper.spike_ratio={wrapper.spike_ratio}')
        else:
            what = f'non-finite {wrapper.skip_reason}'
            bad = self.non_finite(outputs)
            named = ', '.join(f'{k}={v}' for k, v in bad.items()) or 'no logged loss'
        message = (f'iteration {runner.iter + 1}: {what} ({named}); optimizer step, BN '
                   f'statistics and EMA update of this iteration skipped '
                   f'({wrapper.consecutive_skips} in a row, {wrapper.num_skipped} in the run)')
        print_log(message, logger='current', level=logging.WARNING)
        if wrapper.consecutive_skips >= wrapper.max_consecutive_skips:
            raise RuntimeError(
                f'{wrapper.consecutive_skips} optimizer steps in a row were skipped for a '
                f'{what} (last: {named}), so the run stops '
                f'(optim_wrapper.max_consecutive_skips={wrapper.max_consecutive_skips}). '
                f'Likely causes: {LIKELY_CAUSES}. The last checkpoint written holds finite '
                'weights.')

    @staticmethod
    def non_finite(outputs: Optional[dict]) -> dict:
        """The logged values (losses) of ``outputs`` that are NaN or infinite."""
        bad = {}
        for key, value in (outputs or {}).items():
            try:
                number = float(value.detach().float().mean() if torch.is_tensor(value)
                               else value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(number):
                bad[key] = number
        # the losses that went wrong first, their total last
        return dict(sorted(bad.items(), key=lambda item: item[0] == 'loss'))
