"""Per-class thresholds that follow the teacher's own score distribution during training."""
from typing import Optional, Tuple

import torch
from mmengine.dist import all_reduce, is_distributed
from torch import Tensor

from ssl_det.registry import TASK_UTILS
from .base import BaseThresholdPolicy, Thresholds, check_ordered, thresholds_tensor


def otsu_split(hist: Tensor, rel_tol: float = 1e-9) -> Tuple[Tensor, Tensor, Tensor]:
    """Split each row of a score histogram on [0, 1] into two clusters (Otsu's method).

    Otsu's split maximises the between-cluster variance, which for 1-D data is the same as
    2-means. When several splits tie (empty bins between two clusters) the boundary is the
    middle of the tied range, so two separated clusters are cut half-way between them.

    Args:
        hist (Tensor): (C, B) non-negative (possibly decayed) counts; bin ``k`` covers
            ``[k / B, (k + 1) / B)``.
        rel_tol (float): Relative tolerance for ties. Defaults to 1e-9.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``(boundary, upper_mean, valid)``, each (C,):
        the score that separates the clusters, the mean score of the upper cluster (from bin
        centres), and whether the row has mass in at least two bins (otherwise the other two
        are meaningless).
    """
    num_bins = hist.shape[-1]
    hist = hist.to(torch.float64)
    centres = (torch.arange(num_bins, dtype=torch.float64, device=hist.device) + 0.5) / num_bins
    total = hist.sum(-1, keepdim=True).clamp_min(1e-12)
    prob = hist / total
    # Splitting after bin k puts bins 0..k in the lower cluster: k = 0 .. B-2.
    weight_low = prob.cumsum(-1)[:, :-1]
    moment_low = (prob * centres).cumsum(-1)[:, :-1]
    mean_total = (prob * centres).sum(-1, keepdim=True)
    weight_high = 1 - weight_low
    valid_split = (weight_low > 1e-12) & (weight_high > 1e-12)
    between_var = (mean_total * weight_low - moment_low)**2 / (weight_low * weight_high).clamp_min(
        1e-24)
    between_var = torch.where(valid_split, between_var, torch.full_like(between_var, -1.0))
    best = between_var.amax(-1, keepdim=True)
    tied = valid_split & (between_var >= best * (1 - rel_tol))
    positions = torch.arange(num_bins - 1, device=hist.device).expand_as(tied)
    first = torch.where(tied, positions, num_bins).amin(-1)
    last = torch.where(tied, positions, -1).amax(-1)
    valid = valid_split.any(-1)
    first, last = first.clamp(max=num_bins - 2), last.clamp(min=0)
    # The boundary after bin k is the edge (k + 1) / B.
    boundary = ((first + last).to(torch.float64) / 2 + 1) / num_bins
    upper_weight = weight_high.gather(-1, last[:, None]).squeeze(-1).clamp_min(1e-12)
    upper_moment = (mean_total.squeeze(-1) - moment_low.gather(-1, last[:, None]).squeeze(-1))
    upper_mean = upper_moment / upper_weight
    return boundary, upper_mean, valid


@TASK_UTILS.register_module()
class DynamicThreshold(BaseThresholdPolicy):
    """Per-class high/low thresholds adapted to the teacher's score distribution.

    The rule (in the spirit of HSSDA's dynamic dual thresholds):

    1. Every :meth:`update` adds a per-class histogram (``num_bins`` bins on [0, 1]) of ALL the
       teacher's detections of that iteration to a decayed histogram:
       ``hist = momentum * hist + batch_hist``. The histogram thus weighs a score by
       ``momentum ** age``; its window is about ``1 / (1 - momentum)`` updates. Under
       distributed training ``batch_hist`` is summed over ranks first (so every rank must call
       :meth:`update` every iteration), which keeps thresholds identical on all ranks.
    2. For each class whose decayed count ``hist.sum()`` is at least ``min_count`` and whose
       scores occupy at least two bins, Otsu's method splits the histogram into a lower
       (background-like) and an upper (object-like) cluster. Then
       ``low = clamp(boundary, low_floor, low_ceil)``,
       ``high = clamp(mean of the upper cluster, high_floor, high_ceil)`` and
       ``low = min(low, high)``.
    3. Other classes (rare, unseen lately, or all scores in one bin) keep their thresholds,
       which start at ``init_high`` / ``init_low``.
    4. With ``count_cap`` (a guard against confirmation bias): a class's ``high`` is raised,
       never lowered, until the teacher's confident boxes of that class per unlabeled image
       (from the decayed histogram and image count) are at most ``count_cap`` times the
       labeled images' boxes of that class per image (decayed the same way, from
       :meth:`update_labeled`). A teacher that labels every via of a circuit board as a
       pin-hole finds more pin-holes per image than the labeled images hold, and its
       surplus lower-scored ones go to the ignored band instead of teaching the student.
       The cap may lift ``high`` above ``high_ceil`` (to at most 1); ``low`` stays. It
       applies once the class has ``min_count`` decayed scores (in one bin or more) and
       labeled images have been seen.
    5. With ``share_cap`` (the same guard, by class shares): a class's ``high`` is raised,
       never lowered, until its share of the teacher's confident boxes is at most
       ``share_cap`` times its share of the labeled boxes. The shares compare classes with
       each other, so unlabeled images with fewer objects than the labeled ones (labeled
       crops chosen to hold an object, unlabeled ones not) do not tighten it: with the
       teacher's confident boxes per unlabeled image ``T`` at the thresholds of 2.-4., class
       ``c`` may keep ``share_cap * share_c * T`` per image, where ``share_c`` counts every
       labeled box seen so far (not decayed: the labeled set does not change, and a rare
       class would otherwise fall to a share of 0 between its appearances). On DeepPCB a
       teacher whose copper boxes were 60% wrong gave copper 27% of its confident boxes
       against 13% of the defects. It assumes the unlabeled images hold the classes in the
       labeled images' proportions (a random split).
    6. With ``share_floor`` (the other side of 5.): a class's ``high`` is lowered, never
       below ``share_floor_thr``, until its share of the teacher's confident boxes is at
       least ``share_floor`` times its share of the labeled boxes. A class the teacher
       scores lower than the others (on DeepPCB, mousebite and spur: found a quarter of the
       time, at 0.80-0.85 precision, with every class's threshold near 0.82) is otherwise
       taught mostly as background. ``low`` follows when it would exceed ``high``. It
       applies under the same conditions as 5. and before it, so that with both a class
       ends at most at its capped share.

    The whole state (decayed histogram, thresholds, update count) is buffers, so it lives in
    ``state_dict`` and loads with ``torch.load(weights_only=True)``.

    Args:
        num_classes (int): Number of classes.
        init_high (float | Sequence[float]): Starting high thresholds. Defaults to 0.9.
        init_low (float | Sequence[float]): Starting low thresholds. Defaults to 0.5.
        momentum (float): Decay of the score histogram per update, in [0, 1).
            Defaults to 0.99.
        high_floor (float): Lowest high threshold. Defaults to 0.5.
        high_ceil (float): Highest high threshold. Defaults to 0.95.
        low_floor (float): Lowest low threshold; at most ``high_floor``. Defaults to 0.2.
        low_ceil (float): Highest low threshold. Defaults to 0.8.
        min_count (float): Decayed number of scores a class needs before its thresholds move.
            Defaults to 100.0.
        num_bins (int): Histogram bins on [0, 1]; thresholds move in steps of
            ``1 / num_bins``. Defaults to 100.
        sync_across_ranks (bool): Sum each update's histogram over ranks. Defaults to True.
        count_cap (float, optional): Most confident boxes of a class per unlabeled image,
            as a multiple of the labeled images' boxes of that class per image (4. above);
            :meth:`update` then needs ``num_images``. None: no cap. Defaults to None.
        share_cap (float, optional): Largest share of the teacher's confident boxes a class
            may hold, as a multiple of its share of the labeled boxes (5. above);
            :meth:`update` then needs ``num_images``. None: no cap. Defaults to None.
        share_floor (float, optional): Smallest share of the teacher's confident boxes a
            class should hold, as a multiple of its share of the labeled boxes (6. above);
            :meth:`update` then needs ``num_images``. None: no floor. Defaults to None.
        share_floor_thr (float): Lowest ``high`` the share floor may set, in
            ``[low_floor, 1]``. Defaults to 0.5.
    """

    def __init__(self,
                 num_classes: int,
                 init_high: Thresholds = 0.9,
                 init_low: Thresholds = 0.5,
                 momentum: float = 0.99,
                 high_floor: float = 0.5,
                 high_ceil: float = 0.95,
                 low_floor: float = 0.2,
                 low_ceil: float = 0.8,
                 min_count: float = 100.0,
                 num_bins: int = 100,
                 sync_across_ranks: bool = True,
                 count_cap: Optional[float] = None,
                 share_cap: Optional[float] = None,
                 share_floor: Optional[float] = None,
                 share_floor_thr: float = 0.5) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'num_classes must be a positive int, got {num_classes!r}.')
        if not 0 <= momentum < 1:
            raise ValueError(f'momentum must lie in [0, 1), got {momentum}.')
        if not isinstance(num_bins, int) or num_bins < 2:
            raise ValueError(f'num_bins must be an int >= 2, got {num_bins!r}.')
        if min_count < 0:
            raise ValueError(f'min_count must be >= 0, got {min_count}.')
        if count_cap is not None and not count_cap > 0:
            raise ValueError(f'count_cap must be a positive number or None, got {count_cap}.')
        if share_cap is not None and not share_cap > 0:
            raise ValueError(f'share_cap must be a positive number or None, got {share_cap}.')
        if share_floor is not None and not share_floor > 0:
            raise ValueError(f'share_floor must be a positive number or None, got '
                             f'{share_floor}.')
        if share_floor is not None and share_cap is not None and share_floor > share_cap:
            raise ValueError(f'share_floor ({share_floor}) must not exceed share_cap '
                             f'({share_cap}).')
        self._check_bounds(high_floor, high_ceil, low_floor, low_ceil)
        if not low_floor <= share_floor_thr <= 1:
            raise ValueError(f'share_floor_thr must lie in [low_floor, 1] = [{low_floor}, 1], '
                             f'got {share_floor_thr}.')
        high = thresholds_tensor(init_high, num_classes, 'init_high')
        low = thresholds_tensor(init_low, num_classes, 'init_low')
        check_ordered(low, high, 'init_low', 'init_high')
        super().__init__(high=high, low=low, persistent=True)
        self.momentum = momentum
        self.high_floor, self.high_ceil = high_floor, high_ceil
        self.low_floor, self.low_ceil = low_floor, low_ceil
        self.min_count = min_count
        self.num_bins = num_bins
        self.sync_across_ranks = sync_across_ranks
        self.register_buffer('score_hist', torch.zeros(num_classes, num_bins,
                                                       dtype=torch.float64))
        self.register_buffer('num_updates', torch.zeros((), dtype=torch.long))
        self.count_cap = count_cap
        self.share_cap = share_cap
        self.share_floor, self.share_floor_thr = share_floor, share_floor_thr
        # decayed image counts of the teacher's (unlabeled) images and of the labeled ones,
        # and the labeled images' decayed boxes per class: the references of the count cap
        # (saved only with a cap, so that checkpoints of uncapped policies keep their keys)
        capped = count_cap is not None
        self.register_buffer('teacher_images', torch.zeros((), dtype=torch.float64),
                             persistent=capped or self._uses_shares())
        self.register_buffer('labeled_images', torch.zeros((), dtype=torch.float64),
                             persistent=capped)
        self.register_buffer('labeled_boxes', torch.zeros(num_classes, dtype=torch.float64),
                             persistent=capped)
        # the reference of the share cap and floor: every labeled box seen, per class (not
        # decayed), and the decayed unlabeled image count they share with the count cap
        self.register_buffer('labeled_class_total',
                             torch.zeros(num_classes, dtype=torch.float64),
                             persistent=self._uses_shares())

    def _uses_shares(self) -> bool:
        return self.share_cap is not None or self.share_floor is not None

    @property
    def num_classes(self) -> int:
        """Number of classes (always known here, even when it is 1)."""
        return self.score_hist.shape[0]

    def can_ignore(self) -> bool:
        """The band opens whenever the bounds let ``low`` sit below ``high``."""
        return super().can_ignore() or self.low_floor < self.high_ceil

    @staticmethod
    def _check_bounds(high_floor: float, high_ceil: float, low_floor: float,
                      low_ceil: float) -> None:
        named = dict(high_floor=high_floor, high_ceil=high_ceil, low_floor=low_floor,
                     low_ceil=low_ceil)
        outside = {k: v for k, v in named.items() if not 0 <= v <= 1}
        if outside:
            raise ValueError(f'Threshold bounds must lie in [0, 1], got {outside}.')
        if high_floor > high_ceil or low_floor > low_ceil:
            raise ValueError('Need high_floor <= high_ceil and low_floor <= low_ceil, got '
                             f'{named}.')
        if low_floor > high_floor:
            raise ValueError('Need low_floor <= high_floor so that low <= high can always '
                             f'hold, got {named}.')

    @torch.no_grad()
    def update(self, scores: Tensor, labels: Tensor, num_images: Optional[int] = None) -> None:
        """Add this iteration's teacher scores to the histogram and refresh the thresholds.

        Args:
            scores (Tensor): (N,) scores of ALL teacher detections (before thresholding),
                probabilities in [0, 1] (values outside are clamped).
            labels (Tensor): (N,) long class indices.
            num_images (int, optional): Unlabeled images the detections come from; needed
                with ``count_cap``, ``share_cap`` or ``share_floor``.
        """
        self._check_inputs(scores, labels)
        if (self.count_cap is not None or self._uses_shares()) and num_images is None:
            raise ValueError('DynamicThreshold(count_cap=..., share_cap=... or share_floor=...) '
                             'compares confident boxes per image: update() needs num_images.')
        batch_hist = self._histogram(scores, labels)
        images = batch_hist.new_tensor(float(num_images or 0))
        if self.sync_across_ranks and is_distributed():
            all_reduce(batch_hist, op='sum')
            all_reduce(images, op='sum')
        self.score_hist.mul_(self.momentum).add_(batch_hist)
        self.teacher_images.mul_(self.momentum).add_(images)
        self.num_updates += 1
        self._refresh_thresholds()

    @torch.no_grad()
    def update_labeled(self, labels: Tensor, num_images: int) -> None:
        """Add this iteration's labeled boxes (their ``labels``, on ``num_images`` images) to
        the decayed per-image reference of ``count_cap`` and the class totals of
        ``share_cap`` / ``share_floor``; without any this is a no-op.
        Under distributed training every rank must call it every iteration."""
        if self.count_cap is None and not self._uses_shares():
            return
        labels = labels.detach().to(self.labeled_boxes.device).long().flatten()
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f'labeled box labels must lie in [0, {self.num_classes}), got '
                             f'{sorted(set(labels.tolist()))}.')
        counts = torch.bincount(labels, minlength=self.num_classes).to(torch.float64)
        images = counts.new_tensor(float(num_images))
        if self.sync_across_ranks and is_distributed():
            all_reduce(counts, op='sum')
            all_reduce(images, op='sum')
        self.labeled_boxes.mul_(self.momentum).add_(counts)
        self.labeled_images.mul_(self.momentum).add_(images)
        self.labeled_class_total.add_(counts)

    def _histogram(self, scores: Tensor, labels: Tensor) -> Tensor:
        """(C, B) float64 counts of this batch's scores per class and bin."""
        device = self.score_hist.device
        scores = scores.detach().to(device=device, dtype=torch.float64)
        bins = (scores.clamp(0, 1) * self.num_bins).long().clamp(max=self.num_bins - 1)
        flat = labels.to(device).long() * self.num_bins + bins
        counts = torch.bincount(flat, minlength=self.score_hist.numel())
        return counts.view_as(self.score_hist).to(torch.float64)

    def _cluster(self) -> Tuple[Tensor, Tensor, Tensor]:
        """``(low, high, valid)`` per class before clamping: Otsu's boundary and the mean
        of the upper cluster."""
        boundary, upper_mean, valid = otsu_split(self.score_hist)
        return boundary, upper_mean, valid

    def _refresh_thresholds(self) -> None:
        raw_low, raw_high, valid = self._cluster()
        ready = valid & (self.score_hist.sum(-1) >= self.min_count)
        high = raw_high.clamp(self.high_floor, self.high_ceil)
        low = torch.minimum(raw_low.clamp(self.low_floor, self.low_ceil), high)
        dtype = self.high_thr.dtype
        self.high_thr.copy_(torch.where(ready, high.to(dtype), self.high_thr))
        self.low_thr.copy_(torch.where(ready, low.to(dtype), self.low_thr))
        if self.count_cap is not None and self.labeled_images > 0 and self.teacher_images > 0:
            self._raise_high(self.count_cap_thresholds())
        if (self._uses_shares() and self.labeled_class_total.sum() > 0
                and self.teacher_images > 0):
            if self.share_floor is not None:
                self._lower_high(self.share_floor_thresholds())
            if self.share_cap is not None:
                self._raise_high(self.share_cap_thresholds())

    def _edge_as_threshold(self, edge: Tensor, up: bool) -> Tensor:
        """The bin edges ``edge`` (C, float64) in the thresholds' dtype, rounded up (``up``:
        no score of the bin below passes) or down (no score of the edge's bin is left out)."""
        value = edge.to(self.high_thr.dtype)
        off = value.to(edge.dtype) < edge if up else value.to(edge.dtype) > edge
        return torch.where(off, torch.nextafter(value, torch.full_like(value, 2.0 if up else -1.0)),
                           value)

    def _counted(self) -> Tensor:
        """(C,) the classes with ``min_count`` decayed scores, whose caps and floors apply."""
        return self.score_hist.sum(-1) >= self.min_count

    def _raise_high(self, edge: Tensor) -> None:
        """Raise (never lower) the ``high`` of each class with ``min_count`` decayed scores
        to the bin edge ``edge`` (C,), rounded up to the thresholds' dtype so that no score
        of a bin below stays confident."""
        cap = self._edge_as_threshold(edge, up=True)
        self.high_thr.copy_(torch.where(self._counted(), torch.maximum(self.high_thr, cap),
                                        self.high_thr))

    def _lower_high(self, edge: Tensor) -> None:
        """Lower (never raise) the ``high`` of each class with ``min_count`` decayed scores
        to the bin edge ``edge`` (C,), not below ``share_floor_thr``, rounded down so that no
        score of the edge's bin is left out; ``low`` follows where it would exceed the new
        ``high``."""
        target = self._edge_as_threshold(edge.clamp(min=self.share_floor_thr), up=False)
        high = torch.where(self._counted(), torch.minimum(self.high_thr, target), self.high_thr)
        self.high_thr.copy_(high)
        self.low_thr.copy_(torch.minimum(self.low_thr, high))

    def _tail_per_image(self) -> Tensor:
        """(C, B + 1): the teacher's decayed boxes per unlabeled image scoring at or above
        each bin's lower edge, and (last column, 0) above the last."""
        per_image = self.score_hist / self.teacher_images.clamp_min(1e-12)
        tail = per_image.flip(-1).cumsum(-1).flip(-1)
        return torch.cat([tail, tail.new_zeros(tail.shape[0], 1)], -1)

    def _first_edge_within(self, tail: Tensor, allowed: Tensor) -> Tensor:
        """(C,) the lowest bin edge whose tail is at most ``allowed`` (C,)."""
        within = tail <= allowed[:, None] + 1e-9
        first = within.to(torch.uint8).argmax(-1)  # the last column is always within
        return first.to(torch.float64) / self.num_bins

    def _shares(self) -> Tuple[Tensor, Tensor, Tensor]:
        """``(tail, labeled share, confident boxes per image)``: the tail of
        :meth:`_tail_per_image`, each class's share of the labeled boxes and the teacher's
        confident boxes per unlabeled image at the current ``high`` (all classes)."""
        tail = self._tail_per_image()
        start = (self.high_thr.to(torch.float64) * self.num_bins).floor().long()
        start = start.clamp(0, self.num_bins).expand(tail.shape[0])
        confident = tail.gather(-1, start[:, None]).squeeze(-1).sum()
        share = self.labeled_class_total / self.labeled_class_total.sum()
        return tail, share, confident

    def share_floor_thresholds(self) -> Tensor:
        """(C,) per class, the highest bin edge at or above which the class's decayed boxes
        per unlabeled image are at least ``share_floor`` times its labeled share of the
        teacher's confident boxes per image at the current ``high`` (0 where even all its
        boxes are fewer)."""
        tail, share, confident = self._shares()
        needed = self.share_floor * share * confident
        enough = tail >= needed[:, None] - 1e-9
        # the last edge (column B) holds no box: enough only when nothing is needed
        last = torch.where(enough, torch.arange(tail.shape[1], device=tail.device), 0).amax(-1)
        return last.to(torch.float64) / self.num_bins

    def share_cap_thresholds(self) -> Tensor:
        """(C,) per class, the lowest bin edge above which the class's decayed boxes per
        unlabeled image are at most ``share_cap`` times its labeled share of the teacher's
        confident boxes per image at the current ``high`` (bins from the one holding it)."""
        tail, share, confident = self._shares()
        return self._first_edge_within(tail, self.share_cap * share * confident)

    def count_cap_thresholds(self) -> Tensor:
        """(C,) per class, the lowest bin edge above which the teacher's decayed boxes per
        unlabeled image are at most ``count_cap`` times the labeled boxes per image."""
        allowed = self.count_cap * self.labeled_boxes / self.labeled_images.clamp_min(1e-12)
        return self._first_edge_within(self._tail_per_image(), allowed)

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, momentum={self.momentum}, '
                f'high=[{self.high_floor}, {self.high_ceil}], '
                f'low=[{self.low_floor}, {self.low_ceil}], min_count={self.min_count}, '
                f'num_bins={self.num_bins}, count_cap={self.count_cap}, '
                f'share_cap={self.share_cap}, share_floor={self.share_floor}, '
                f'updates={int(self.num_updates)}')
