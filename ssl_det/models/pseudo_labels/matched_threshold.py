"""HSSDA's dynamic dual thresholds: 2-means on the scores of teacher boxes that match labels."""
from typing import Tuple

import torch
from torch import Tensor

from ssl_det.registry import TASK_UTILS
from .dynamic_threshold import DynamicThreshold, otsu_split


def two_means(hist: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """The two centres of a 1-D 2-means of each row of a score histogram on [0, 1].

    The clusters are Otsu's split (:func:`otsu_split`, the same as 2-means in 1-D); their
    centres are the mean bin centres on each side of the boundary.

    Args:
        hist (Tensor): (C, B) non-negative (possibly decayed) counts.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``(lower_centre, upper_centre, valid)``, each (C,);
        the centres are meaningless where ``valid`` is False (mass in fewer than two bins).
    """
    boundary, _, valid = otsu_split(hist)
    num_bins = hist.shape[-1]
    hist = hist.to(torch.float64)
    centres = (torch.arange(num_bins, dtype=torch.float64, device=hist.device) + 0.5) / num_bins
    below = centres[None, :] < boundary[:, None]
    weighted = hist * centres
    lower = (weighted * below).sum(-1) / (hist * below).sum(-1).clamp_min(1e-12)
    upper = (weighted * ~below).sum(-1) / (hist * ~below).sum(-1).clamp_min(1e-12)
    return lower, upper, valid


@TASK_UTILS.register_module()
class MatchedScoreThreshold(DynamicThreshold):
    """Per-class dual thresholds from the scores of teacher boxes that match ground truth
    on the *labeled* scenes (HSSDA's rule, online).

    HSSDA (CVPR 2023) re-labels the whole training set with the teacher every few epochs,
    keeps the predictions on labeled scenes that match a ground-truth box (BEV IoU >= 0.5),
    runs a 2-means per class on their scores and takes the two centres as ``[high, low]``.
    Here the same happens every iteration on the labeled scenes of the batch: the model
    (``TeacherStudent3D``, which reads :attr:`score_source`) runs the teacher on them, keeps
    the boxes whose BEV IoU with a ground-truth box of their class is at least
    :attr:`match_iou`, and calls :meth:`update` with their scores. The scores enter the
    decayed histogram of :class:`DynamicThreshold`; once a class has ``min_count`` of them,
    ``high = clamp(upper centre, high_floor, high_ceil)`` and
    ``low = min(clamp(lower centre, low_floor, low_ceil), high)``.

    HSSDA clusters three scores per box (class confidence, RoI score, consistency IoU
    between two views) and requires all three to pass; a single-stage detector has only the
    first, which is the one used here.

    Args:
        match_iou (float): BEV IoU with a same-class ground-truth box for a teacher box to
            count as matched. Defaults to 0.5 (HSSDA).
        **kwargs: :class:`DynamicThreshold`'s arguments.
    """

    #: where the scores that move the thresholds come from (read by the teacher-student model)
    score_source = 'labeled_matched'

    def __init__(self, num_classes: int, match_iou: float = 0.5, **kwargs) -> None:
        if not 0 < match_iou <= 1:
            raise ValueError(f'match_iou must lie in (0, 1], got {match_iou}.')
        super().__init__(num_classes, **kwargs)
        self.match_iou = float(match_iou)

    def _cluster(self) -> Tuple[Tensor, Tensor, Tensor]:
        """The two 2-means centres (HSSDA's ``[high, low]``)."""
        return two_means(self.score_hist)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, match_iou={self.match_iou}'
