"""The classic policy: keep teacher detections above one score threshold, drop the rest."""
from typing import Optional

from ssl_det.registry import TASK_UTILS
from .base import BaseThresholdPolicy, Thresholds, thresholds_tensor


@TASK_UTILS.register_module()
class FixedThreshold(BaseThresholdPolicy):
    """Detections with ``score >= score_thr`` become pseudo ground truth; none are ignored.

    This is what mmdet's ``SemiBaseDetector`` does with ``semi_train_cfg.cls_pseudo_thr``.

    Args:
        score_thr (float | Sequence[float]): One threshold in [0, 1] for every class, or one
            per class. Defaults to 0.9.
        num_classes (int, optional): Number of classes; only needed to expand a single
            threshold into per-class values (e.g. for per-class logging). Defaults to None.

    Example:
        >>> policy = TASK_UTILS.build(dict(type='FixedThreshold', score_thr=0.7))
        >>> split = policy(scores, labels)  # split.confident, split.ignored (all False)
    """

    def __init__(self, score_thr: Thresholds = 0.9, num_classes: Optional[int] = None) -> None:
        thr = thresholds_tensor(score_thr, num_classes, 'score_thr')
        # low == high leaves an empty ignore band.
        super().__init__(high=thr, low=thr, persistent=False)
