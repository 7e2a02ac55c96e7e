"""Two thresholds: confident detections teach, ambiguous ones are ignored, the rest dropped."""
from typing import Optional

import torch

from ssl_det.registry import TASK_UTILS
from .base import BaseThresholdPolicy, Thresholds, check_ordered, thresholds_tensor


@TASK_UTILS.register_module()
class DualThreshold(BaseThresholdPolicy):
    """``score >= high`` → confident; ``low <= score < high`` → ignored; ``score < low`` →
    dropped.

    Ignoring the ambiguous band keeps half-confident objects from being learned as background
    (which a single threshold does to every true object it misses).

    Args:
        high (float | Sequence[float]): Confidence threshold, scalar or per class.
            Defaults to 0.9.
        low (float | Sequence[float]): Lower end of the ignore band, scalar or per class.
            Defaults to 0.5. Needs ``0 <= low <= high <= 1`` for every class.
        num_classes (int, optional): Number of classes; inferred from per-class lists, and
            needed only to expand scalars into per-class values. Defaults to None.

    Raises:
        ValueError: If a threshold lies outside [0, 1], ``low > high`` for some class, or the
            per-class lists disagree in length.
    """

    def __init__(self,
                 high: Thresholds = 0.9,
                 low: Thresholds = 0.5,
                 num_classes: Optional[int] = None) -> None:
        num_classes = num_classes or self._infer_num_classes(high, low)
        high_thr = thresholds_tensor(high, num_classes, 'high')
        low_thr = thresholds_tensor(low, num_classes, 'low')
        check_ordered(low_thr, high_thr)
        super().__init__(high=high_thr, low=low_thr, persistent=False)

    @staticmethod
    def _infer_num_classes(high: Thresholds, low: Thresholds) -> Optional[int]:
        lengths = {torch.as_tensor(v).numel() for v in (high, low) if torch.as_tensor(v).dim()}
        if len(lengths) > 1:
            raise ValueError(f'high and low have different numbers of per-class values: '
                             f'high={high!r}, low={low!r}.')
        return lengths.pop() if lengths else None
