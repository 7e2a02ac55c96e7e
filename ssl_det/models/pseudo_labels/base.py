"""The interface every pseudo-label policy shares: per-class thresholds split teacher detections."""
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor, nn

Thresholds = Union[float, Sequence[float]]


class PseudoLabelSplit(NamedTuple):
    """How a policy sorted N teacher detections.

    Attributes:
        confident (Tensor): (N,) bool; these become pseudo ground truth.
        ignored (Tensor): (N,) bool, disjoint from ``confident``; these become
            ``ignored_instances`` (neither foreground nor background for the student).
    """

    confident: Tensor
    ignored: Tensor

    @property
    def dropped(self) -> Tensor:
        """(N,) bool: detections that are neither confident nor ignored."""
        return ~(self.confident | self.ignored)


def thresholds_tensor(value: Thresholds, num_classes: Optional[int], name: str) -> Tensor:
    """Turn a scalar or per-class threshold into a float32 tensor and check its range.

    Args:
        value (float | Sequence[float]): One threshold for all classes, or one per class.
        num_classes (int, optional): Expected number of classes. A scalar is expanded to this
            many entries; when None a scalar stays a (1,) tensor that applies to every class.
        name (str): The argument's name, for error messages.

    Returns:
        Tensor: (C,) or (1,) float32 thresholds.
    """
    thr = torch.as_tensor(value, dtype=torch.float32).flatten()
    if thr.numel() == 0:
        raise ValueError(f'{name} must be a float or a non-empty list of floats, got {value!r}.')
    if thr.numel() == 1 and num_classes is not None:
        thr = thr.expand(num_classes).clone()
    elif num_classes is not None and thr.numel() != num_classes:
        raise ValueError(f'{name} has {thr.numel()} per-class values but num_classes is '
                         f'{num_classes}; give one value per class or a single float.')
    bad = ((thr < 0) | (thr > 1) | thr.isnan()).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f'{name} must lie in [0, 1]; got {value!r} (bad class indices {bad}).')
    return thr


def check_ordered(low: Tensor, high: Tensor, low_name: str = 'low',
                  high_name: str = 'high') -> None:
    """Raise a ValueError naming the classes where ``low > high``."""
    bad = (low > high).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f'Need 0 <= {low_name} <= {high_name} <= 1 for every class, but {low_name} > '
            f'{high_name} for class indices {bad}: {low_name}={low[bad].tolist()}, '
            f'{high_name}={high[bad].tolist()}.')


def _key_name(class_idx: int, class_names: Optional[Sequence[str]]) -> str:
    """The suffix of a per-class log key: the class name (spaces → '_') or its index."""
    if class_names is None:
        return str(class_idx)
    return re.sub(r'\s+', '_', str(class_names[class_idx]))


class BaseThresholdPolicy(nn.Module):
    """Split teacher detections by a per-class high and low score threshold.

    ``score >= high[label]`` → confident; ``low[label] <= score < high[label]`` → ignored;
    below ``low[label]`` → dropped. Subclasses choose the thresholds (fixed or adapted in
    :meth:`update`). A policy is an ``nn.Module`` whose state is buffers, so a model that owns
    one moves it with ``.to(device)`` and saves it in its checkpoint.

    Args:
        high (Tensor): (C,) or (1,) float32 high thresholds.
        low (Tensor): Same shape as ``high``; ``low <= high``.
        persistent (bool): Whether the thresholds belong in ``state_dict``. Static policies
            say False so that the config, not an old checkpoint, decides their thresholds.
    """

    #: Which scores :meth:`update` expects: ``'teacher'``, all the teacher's detections on
    #: the unlabeled (weak) views; ``'labeled_matched'``, the scores of the teacher's boxes
    #: that match ground truth on labeled scenes (:class:`MatchedScoreThreshold`).
    score_source = 'teacher'

    def __init__(self, high: Tensor, low: Tensor, persistent: bool) -> None:
        super().__init__()
        check_ordered(low, high)
        self.register_buffer('high_thr', high.clone(), persistent=persistent)
        self.register_buffer('low_thr', low.clone(), persistent=persistent)

    @property
    def num_classes(self) -> Optional[int]:
        """Number of classes, or None when one threshold applies to every class."""
        return None if self.high_thr.numel() == 1 else self.high_thr.numel()

    def forward(self, scores: Tensor, labels: Tensor) -> PseudoLabelSplit:
        """Split detections into confident, ignored and (implicitly) dropped.

        Args:
            scores (Tensor): (N,) teacher scores.
            labels (Tensor): (N,) long class indices.

        Returns:
            PseudoLabelSplit: Disjoint (N,) bool masks ``confident`` and ``ignored``.
        """
        self._check_inputs(scores, labels)
        high = self._per_detection(self.high_thr, scores, labels)
        low = self._per_detection(self.low_thr, scores, labels)
        confident = scores >= high
        ignored = (scores >= low) & ~confident
        return PseudoLabelSplit(confident=confident, ignored=ignored)

    def update(self, scores: Tensor, labels: Tensor, num_images: Optional[int] = None) -> None:
        """Adapt to this iteration's teacher detections (all of them, before thresholding)
        on ``num_images`` unlabeled images.

        Static policies ignore it. ``scores`` and ``labels`` as in :meth:`forward`.
        """

    def update_labeled(self, labels: Tensor, num_images: int) -> None:
        """See this iteration's labeled ground truth: ``labels`` (M,) of the boxes of
        ``num_images`` labeled images (after their augmentation). Policies that compare the
        teacher with the labeled images (``DynamicThreshold(count_cap=...)``) use it;
        the others ignore it."""

    def can_ignore(self) -> bool:
        """Whether some detection can land in the ignored band (``low < high`` for a class)."""
        return bool((self.low_thr < self.high_thr).any())

    def thresholds(self) -> Dict[str, Tensor]:
        """Current thresholds: ``dict(high=Tensor(C), low=Tensor(C))`` (copies; (1,) when one
        threshold serves every class)."""
        return dict(high=self.high_thr.detach().clone(), low=self.low_thr.detach().clone())

    def log_stats(self,
                  split: PseudoLabelSplit,
                  labels: Tensor,
                  class_names: Optional[Sequence[str]] = None,
                  per_class: bool = True) -> Dict[str, float]:
        """Numbers worth logging each iteration.

        Keys: ``pseudo/num_confident``, ``pseudo/num_ignored``, ``pseudo/num_dropped``; with
        ``per_class``, ``pseudo/num_confident_{c}``, ``pseudo/num_ignored_{c}``,
        ``pseudo/thr_high_{c}`` and ``pseudo/thr_low_{c}`` where ``{c}`` is the class name
        (whitespace → ``_``) or index; a policy with one threshold for all classes logs
        ``pseudo/thr_high`` and ``pseudo/thr_low`` instead of per-class thresholds.

        Args:
            split (PseudoLabelSplit): What :meth:`forward` returned for ``labels``.
            labels (Tensor): (N,) long class indices of the split detections.
            class_names (Sequence[str], optional): Names for the keys. Defaults to None
                (class indices).
            per_class (bool): Whether to add per-class keys. Defaults to True.

        Returns:
            dict[str, float]: The statistics.
        """
        stats = {
            'pseudo/num_confident': float(split.confident.sum()),
            'pseudo/num_ignored': float(split.ignored.sum()),
            'pseudo/num_dropped': float(split.dropped.sum()),
        }
        if not per_class:
            return stats
        num_classes = self._num_classes_for_logging(labels, class_names)
        labels = labels.flatten().long()
        for kind, mask in (('confident', split.confident), ('ignored', split.ignored)):
            counts = torch.bincount(labels[mask].cpu(), minlength=num_classes).tolist()
            for c in range(num_classes):
                stats[f'pseudo/num_{kind}_{_key_name(c, class_names)}'] = float(counts[c])
        stats.update(self._threshold_stats(num_classes, class_names))
        return stats

    def _threshold_stats(self, num_classes: int,
                         class_names: Optional[Sequence[str]]) -> Dict[str, float]:
        high, low = self.high_thr.tolist(), self.low_thr.tolist()
        if len(high) == 1:
            return {'pseudo/thr_high': high[0], 'pseudo/thr_low': low[0]}
        stats = {}
        for c in range(num_classes):
            name = _key_name(c, class_names)
            stats[f'pseudo/thr_high_{name}'] = high[c]
            stats[f'pseudo/thr_low_{name}'] = low[c]
        return stats

    def _num_classes_for_logging(self, labels: Tensor,
                                 class_names: Optional[Sequence[str]]) -> int:
        known = self.num_classes
        if class_names is not None:
            if known is not None and len(class_names) != known:
                raise ValueError(f'class_names has {len(class_names)} names but the policy '
                                 f'has thresholds for {known} classes.')
            return len(class_names)
        if known is not None:
            return known
        return int(labels.max()) + 1 if labels.numel() else 0

    def _check_inputs(self, scores: Tensor, labels: Tensor) -> None:
        if scores.dim() != 1 or labels.shape != scores.shape:
            raise ValueError('scores and labels must both have shape (N,), got '
                             f'{tuple(scores.shape)} and {tuple(labels.shape)}.')
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(f'labels must be integer class indices, got {labels.dtype}.')
        num_classes = self.num_classes
        if num_classes is not None and labels.numel():
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= num_classes:
                raise ValueError(f'labels must lie in [0, {num_classes}) for a policy with '
                                 f'{num_classes} classes, got labels in [{low}, {high}].')

    @staticmethod
    def _per_detection(thr: Tensor, scores: Tensor, labels: Tensor) -> Tensor:
        """Each detection's threshold, in the scores' dtype so that a score equal to the
        threshold literal (e.g. 0.9 in float16) compares as equal."""
        dtype = scores.dtype if scores.dtype.is_floating_point else torch.float32
        thr = thr.to(device=scores.device, dtype=dtype)
        if thr.numel() == 1:
            return thr.expand(scores.shape)
        return thr[labels.long()]

    def extra_repr(self) -> str:
        return f'high={self.high_thr.tolist()}, low={self.low_thr.tolist()}'


__all__: List[str] = [
    'PseudoLabelSplit', 'BaseThresholdPolicy', 'thresholds_tensor', 'check_ordered'
]
