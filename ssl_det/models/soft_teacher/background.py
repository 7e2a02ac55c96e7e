"""Soft Teacher's background weighting: a student proposal sampled as background is weighted
by how much the teacher believes it is background.

The student's sampled boxes live in the strong view; the teacher's features in the weak view.
Each background box is projected into the weak view (through the two views' homographies),
the teacher's RoI head scores it, and its background probability becomes the box's weight in
the student's classification loss, which is then normalised by the sum of the weights.
"""
from typing import List, Sequence

import torch
from torch import Tensor

from ssl_det.structures import filter_degenerate, project_boxes, weak_to_strong_homography
from .uncertainty import refine_boxes


def student_to_teacher_boxes(boxes: Tensor, student_homography, teacher_homography,
                             teacher_shape) -> Tensor:
    """Boxes in the student's (strong) view → the teacher's (weak) view, clipped to it."""
    # weak_to_strong_homography maps its first view onto its second: here student → teacher
    matrix = weak_to_strong_homography(student_homography, teacher_homography)
    clipped, _ = filter_degenerate(project_boxes(boxes, matrix), teacher_shape)
    return clipped


@torch.no_grad()
def teacher_class_scores(roi_head, feats: Sequence[Tensor], boxes: List[Tensor],
                         batch_img_metas: List[dict], num_classes: int) -> Tensor:
    """The teacher's class distribution of given boxes: ``(sum N_i, num_classes + 1)``
    softmax scores, background last, images concatenated in order. Arguments as
    :func:`teacher_background_scores`."""
    if sum(len(b) for b in boxes) == 0:
        like = boxes[0] if boxes else torch.zeros(0)
        return like.new_zeros((0, num_classes + 1))
    results = refine_boxes(roi_head, feats, boxes, batch_img_metas)
    return torch.cat([r.scores for r in results])


@torch.no_grad()
def teacher_background_scores(roi_head, feats: Sequence[Tensor], boxes: List[Tensor],
                              batch_img_metas: List[dict]) -> Tensor:
    """The teacher's background probability (last score column) of given boxes.

    Args:
        roi_head: the teacher's RoI head (eval mode).
        feats (Sequence[Tensor]): the teacher's features.
        boxes (list[Tensor]): per image (N_i, 4) boxes in the teacher's view.
        batch_img_metas (list[dict]): the teacher's per-image metainfo.

    Returns:
        Tensor: (sum N_i,) background probabilities, images concatenated in order.
    """
    # the class count only shapes an empty result, whose last column is all there is
    return teacher_class_scores(roi_head, feats, boxes, batch_img_metas, 0)[:, -1]


def soft_background_weights(labels: Tensor, label_weights: Tensor, bg_scores: Tensor,
                            num_classes: int) -> Tensor:
    """Classification weights where each background sample's weight is its teacher
    background score.

    Args:
        labels (Tensor): (N,) sampled labels; ``num_classes`` marks background.
        label_weights (Tensor): (N,) the sampler's weights.
        bg_scores (Tensor): (number of background samples,) teacher background scores, in
            the order the background samples appear in ``labels``.
        num_classes (int): the background label.

    Returns:
        Tensor: (N,) new weights (foreground weights unchanged), detached.
    """
    negative = labels == num_classes
    if int(negative.sum()) != bg_scores.numel():
        raise ValueError(f'{int(negative.sum())} background samples but {bg_scores.numel()} '
                         'teacher background scores')
    weights = label_weights.detach().clone()
    weights[negative] = bg_scores.detach().to(weights.dtype)
    return weights
