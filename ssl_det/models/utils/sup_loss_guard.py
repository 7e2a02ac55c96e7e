"""Back the unlabeled loss off when it drives the labeled loss up.

The labeled loss is the one objective of a semi-supervised run that is known to be right.
When the pseudo labels pull the student away from the labels (an unsupervised weight too
high for this detector, a teacher that teaches most objects as background), the labeled
loss rises: the student is unlearning what the labels taught it. On the demo data, mmdet's
Soft Teacher settings (unsupervised weight 4, no gradient clipping) doubled the labeled
classification loss in 50 iterations and then exploded (docs/benchmarks.md, "A config
ported from mmdet"). This guard watches the labeled loss and halves the unlabeled loss's
weight while it stays well above where it started.
"""
import logging
import math
from typing import Optional

import torch
import torch.nn as nn
from mmengine.dist import all_reduce, is_distributed
from mmengine.logging import print_log


class SupLossGuard(nn.Module):
    """Halve the unlabeled loss's weight while the labeled loss runs ``rise`` times above
    its start.

    The defaults act early: on the demo, mmdet's unsupervised weight of 4 had raised the
    labeled loss 1.5x within 30 iterations, and a guard that waited for 1.5x (over a
    10-iteration reference, cutting every 20) let the run finish below supervised (teacher
    0.578 against 0.608), where these defaults ended above it (0.620, seed 0).

    The reference is the mean labeled loss of the first ``ref_iters`` iterations with the
    unlabeled loss on; from then on an EMA (``momentum``) of the labeled loss is compared
    with it. When the EMA exceeds ``rise`` × the reference, the scale applied to the
    unlabeled weight is halved (logged as a warning), at most once every ``cooldown``
    iterations and down to ``min_scale``; it never grows back. The state is made of buffers,
    so it is saved in checkpoints and a resumed run continues with it. Under distributed
    training the labeled loss is averaged over the ranks first, so every rank takes the
    same decision.

    Args:
        rise (float, optional): the labeled loss's rise that cuts the weight; None turns
            the guard off (the scale stays 1). Default: 1.3.
        ref_iters (int): iterations that set the reference. Default: 5.
        momentum (float): of the labeled loss's EMA. Default: 0.9.
        cooldown (int): iterations between two cuts. Default: 10.
        min_scale (float): the smallest scale. Default: 1/16.
    """

    def __init__(self, rise: Optional[float] = 1.3, ref_iters: int = 5,
                 momentum: float = 0.9, cooldown: int = 10, min_scale: float = 1 / 16) -> None:
        super().__init__()
        if rise is not None and not rise > 1:
            raise ValueError(f'sup_loss_guard rise must be > 1 or None, got {rise!r}.')
        if not isinstance(ref_iters, int) or ref_iters < 1:
            raise ValueError(f'sup_loss_guard ref_iters must be an int >= 1, got {ref_iters!r}.')
        if not 0 <= momentum < 1:
            raise ValueError(f'sup_loss_guard momentum must lie in [0, 1), got {momentum!r}.')
        if not isinstance(cooldown, int) or cooldown < 1:
            raise ValueError(f'sup_loss_guard cooldown must be an int >= 1, got {cooldown!r}.')
        if not 0 < min_scale <= 1:
            raise ValueError(f'sup_loss_guard min_scale must lie in (0, 1], got {min_scale!r}.')
        self.rise, self.ref_iters, self.momentum = rise, ref_iters, momentum
        self.cooldown, self.min_scale = cooldown, min_scale
        f64 = dict(dtype=torch.float64)
        self.register_buffer('scale', torch.ones((), **f64))
        self.register_buffer('ref', torch.zeros((), **f64))
        self.register_buffer('ema', torch.zeros((), **f64))
        self.register_buffer('count', torch.zeros((), dtype=torch.long))
        self.register_buffer('last_cut', torch.full((), -cooldown, dtype=torch.long))

    @torch.no_grad()
    def update(self, sup_loss: torch.Tensor) -> float:
        """See this iteration's labeled loss (a scalar tensor); return the scale of the
        unlabeled weight for this iteration."""
        if self.rise is None:
            return 1.0
        loss = sup_loss.detach().to(self.ema.device, torch.float64).reshape(())
        if is_distributed():
            loss = loss.clone()
            all_reduce(loss, op='mean')
        value = float(loss)
        if not math.isfinite(value):  # the non-finite guard skips this step anyway
            return float(self.scale)
        self.count += 1
        count = int(self.count)
        if count == 1:
            self.ema.fill_(value)
        else:
            self.ema.mul_(self.momentum).add_((1 - self.momentum) * value)
        if count <= self.ref_iters:
            self.ref.add_((value - self.ref) / count)  # running mean
            return float(self.scale)
        ema, ref = float(self.ema), float(self.ref)
        if (ema > self.rise * ref and count - int(self.last_cut) >= self.cooldown
                and float(self.scale) > self.min_scale):
            old = float(self.scale)
            self.scale.fill_(max(old / 2, self.min_scale))
            self.last_cut.fill_(count)
            print_log(
                f'TeacherStudent: the labeled loss rose to {ema:.3f}, {ema / ref:.2f}x its '
                f'{ref:.3f} of the first {self.ref_iters} unlabeled iterations: the pseudo '
                'labels are pulling the student away from the labels, so the unlabeled '
                f'loss weight is scaled {old:g} -> {float(self.scale):g} (unlabeled '
                f'iteration {count}). If this repeats, lower unsup_weight, clip gradients '
                '(optim_wrapper.clip_grad), or check the thresholds with '
                'tools/analysis/pseudo_label_quality.py; sup_loss_guard=None turns this off.',
                logger='current', level=logging.WARNING)
        return float(self.scale)
