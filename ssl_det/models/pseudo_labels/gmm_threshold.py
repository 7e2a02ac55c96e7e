"""Per-class thresholds from a two-component Gaussian mixture of the teacher's scores
(Consistent-Teacher's GMM policy, Wang et al., CVPR 2023)."""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from ssl_det.registry import TASK_UTILS
from .base import Thresholds
from .dynamic_threshold import DynamicThreshold, otsu_split


def fit_two_gaussians(hist: Tensor, iters: int = 50, min_var: float = 1e-4
                      ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fit a two-component 1-D Gaussian mixture to each row of a score histogram by EM.

    Each bin counts as its centre, weighted by its (possibly decayed) count. EM starts from
    Otsu's split of the row: each side's mean, variance and mass.

    Args:
        hist (Tensor): (C, B) non-negative counts over [0, 1].
        iters (int): EM iterations. Defaults to 50.
        min_var (float): Variance floor (a component on one bin would collapse to 0).

    Returns:
        ``(weights, means, variances, valid)``: (C, 2) each, the lower component first, and
        (C,) bool, rows with mass in at least two bins.
    """
    num_bins = hist.shape[-1]
    hist = hist.to(torch.float64)
    x = (torch.arange(num_bins, dtype=torch.float64, device=hist.device) + 0.5) / num_bins
    boundary, _, valid = otsu_split(hist)
    upper = (x[None] >= boundary[:, None]).to(torch.float64)  # (C, B)
    resp = torch.stack([1.0 - upper, upper], 1)  # (C, 2, B)
    weights = means = variances = None
    for _ in range(iters + 1):
        mass = (resp * hist[:, None]).sum(-1).clamp_min(1e-12)  # (C, 2)
        weights = mass / mass.sum(-1, keepdim=True)
        means = (resp * hist[:, None] * x).sum(-1) / mass
        variances = ((resp * hist[:, None] * (x - means[..., None])**2).sum(-1) / mass
                     ).clamp_min(min_var)
        resp = torch.softmax(_log_joint(x, weights, means, variances), dim=1)
    # EM may swap the components: keep the lower mean first
    swap = means[:, 0] > means[:, 1]
    order = torch.stack([swap.long(), (~swap).long()], -1)
    return (weights.gather(1, order), means.gather(1, order), variances.gather(1, order),
            valid)


def upper_posterior(scores: Tensor, weights: Tensor, means: Tensor,
                    variances: Tensor) -> Tensor:
    """(C, S) posterior probability of the upper component at each of ``scores`` (S,)."""
    return torch.softmax(_log_joint(scores, weights, means, variances), dim=1)[:, 1]


def _log_joint(x: Tensor, weights: Tensor, means: Tensor, variances: Tensor) -> Tensor:
    """(C, 2, S) log of each component's weight times its Gaussian density at ``x`` (S,)."""
    return (weights.clamp_min(1e-12).log()[..., None]
            - 0.5 * (2 * math.pi * variances[..., None]).log()
            - (x - means[..., None])**2 / (2 * variances[..., None]))


@TASK_UTILS.register_module()
class GMMThreshold(DynamicThreshold):
    """Per-class thresholds where a two-component Gaussian mixture of the teacher's scores
    says a detection belongs to the object-like component.

    Consistent-Teacher fits, per class, a mixture of two Gaussians to the teacher's scores and
    takes as pseudo boxes the detections the upper (object-like) component explains best. Here
    the fit runs on :class:`DynamicThreshold`'s decayed per-class score histogram (so the
    window, the sync across ranks, ``min_count``, the clamps and ``count_cap`` are the same),
    by EM started from Otsu's split. Then, per class:

    - ``high`` = the lowest score (at or above the lower component's mean) whose posterior
      of the upper component reaches ``pos_posterior`` (0.5: the boundary where the two
      components explain a score equally, Consistent-Teacher's cut);
    - ``low`` = the same for ``ignore_posterior``: scores the mixture cannot call
      background with confidence are ignored, not taught as background. None puts ``low``
      at ``high`` (no ignored band, as Consistent-Teacher).

    Both are clamped as in :class:`DynamicThreshold` (``high`` to ``[high_floor,
    high_ceil]``, ``low`` to ``[low_floor, low_ceil]`` and at most ``high``).

    Args:
        num_classes (int): Number of classes.
        pos_posterior (float): Upper-component posterior of the confident threshold.
            Defaults to 0.5.
        ignore_posterior (float, optional): Upper-component posterior of the ignored band's
            lower edge, below ``pos_posterior``. Defaults to 0.1.
        em_iters (int): EM iterations per update. Defaults to 50.
        Other args: as :class:`DynamicThreshold`.
    """

    def __init__(self,
                 num_classes: int,
                 pos_posterior: float = 0.5,
                 ignore_posterior: Optional[float] = 0.1,
                 em_iters: int = 50,
                 init_high: Thresholds = 0.9,
                 init_low: Thresholds = 0.5,
                 **kwargs) -> None:
        if not 0 < pos_posterior < 1:
            raise ValueError(f'pos_posterior must lie in (0, 1), got {pos_posterior}.')
        if ignore_posterior is not None and not 0 < ignore_posterior <= pos_posterior:
            raise ValueError('ignore_posterior must lie in (0, pos_posterior] or be None, got '
                             f'{ignore_posterior} (pos_posterior {pos_posterior}).')
        if em_iters < 1:
            raise ValueError(f'em_iters must be >= 1, got {em_iters}.')
        if ignore_posterior is None:
            init_low = init_high  # no band, from the start
        super().__init__(num_classes, init_high=init_high, init_low=init_low, **kwargs)
        self.pos_posterior = float(pos_posterior)
        self.ignore_posterior = None if ignore_posterior is None else float(ignore_posterior)
        self.em_iters = int(em_iters)

    def can_ignore(self) -> bool:
        return self.ignore_posterior is not None and super().can_ignore()

    def _cluster(self) -> Tuple[Tensor, Tensor, Tensor]:
        weights, means, variances, valid = fit_two_gaussians(self.score_hist, self.em_iters)
        grid = torch.linspace(0, 1, 1001, dtype=torch.float64, device=self.score_hist.device)
        posterior = upper_posterior(grid, weights, means, variances)  # (C, 1001)
        above_lower_mean = grid[None] >= means[:, :1]

        def first_reaching(level: float) -> Tensor:
            hit = (posterior >= level) & above_lower_mean
            index = hit.to(torch.uint8).argmax(-1)
            # no grid score reaches it (a flat mixture): the upper component's mean
            return torch.where(hit.any(-1), grid[index], means[:, 1])

        high = first_reaching(self.pos_posterior)
        low = (first_reaching(self.ignore_posterior) if self.ignore_posterior is not None
               else high)
        return low, high, valid

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', pos_posterior={self.pos_posterior}, '
                f'ignore_posterior={self.ignore_posterior}')
