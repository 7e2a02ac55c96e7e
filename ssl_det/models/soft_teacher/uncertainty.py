"""Soft Teacher's box-jitter regression uncertainty, batched over every box of every image.

Each pseudo box is jittered ``times`` times (Gaussian noise, std = ``scale`` x the box's
width for x1/x2 and height for y1/y2), the teacher's RoI head refines all jittered copies in
one forward pass, and the spread of the refinements (per-coordinate std over the copies,
divided by the mean refined box's size, averaged over the four coordinates) is the box's
uncertainty. The arithmetic is ``ssl_det.ops.box_jitter`` / ``jitter_uncertainty``, which
match mmdet's ``SoftTeacher.aug_box`` / ``compute_uncertainty_with_aug`` for the same noise.
"""
from typing import List, Optional, Sequence

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from ssl_det.ops import box_jitter_with_noise, jitter_noise, jitter_uncertainty


@torch.no_grad()
def refine_boxes(roi_head, feats: Sequence[Tensor], boxes: List[Tensor],
                 batch_img_metas: List[dict]) -> List[InstanceData]:
    """The teacher's RoI head applied to given boxes: per image ``bboxes`` (N, 4C) decoded
    and clipped to the image, and ``scores`` (N, C + 1) with background last.

    This is ``roi_head.predict_bbox`` without NMS or score threshold (``rcnn_test_cfg=None``),
    so it works for every mmdet RoI head that has ``predict_bbox`` (standard, cascade, ...).
    """
    proposals = [InstanceData(bboxes=b) for b in boxes]
    return roi_head.predict_bbox(feats, batch_img_metas, proposals, rcnn_test_cfg=None,
                                 rescale=False)


@torch.no_grad()
def jitter_box_uncertainty(roi_head, feats: Sequence[Tensor], boxes: List[Tensor],
                           labels: List[Tensor], batch_img_metas: List[dict], times: int,
                           scale: float, noise: Optional[Tensor] = None) -> List[Tensor]:
    """Regression uncertainty of each pseudo box (Soft Teacher's box jittering).

    Args:
        roi_head: the teacher's RoI head (eval mode).
        feats (Sequence[Tensor]): the teacher's FPN features of the batch.
        boxes (list[Tensor]): per image (N_i, 4) pseudo boxes in the teacher's view.
        labels (list[Tensor]): per image (N_i,) their labels.
        batch_img_metas (list[dict]): per image metainfo (``img_shape`` clips the boxes).
        times (int): jittered copies per box (``jitter_times``).
        scale (float): noise std as a fraction of the box size (``jitter_scale``).
        noise (Tensor, optional): (times, sum N_i, 4) standard-normal draws; None draws them
            with ``torch.randn`` (one call for the whole batch).

    Returns:
        list[Tensor]: per image (N_i,) uncertainties (0 when all refinements agree).
    """
    sizes = [len(b) for b in boxes]
    total = sum(sizes)
    if total == 0:
        return [b.new_zeros((0, )) for b in boxes]
    all_boxes = torch.cat(boxes)
    if noise is None:
        noise = jitter_noise(all_boxes, times)
    jittered = box_jitter_with_noise(all_boxes, noise, scale).split([n * times for n in sizes])
    refined = refine_boxes(roi_head, feats, list(jittered), batch_img_metas)
    out = []
    for result, image_labels in zip(refined, labels):
        if len(image_labels) == 0:
            out.append(image_labels.new_zeros((0, ), dtype=torch.float32))
            continue
        channels = result.bboxes.shape[-1] // 4
        out.append(jitter_uncertainty(result.bboxes.float(),
                                      image_labels if channels > 1 else None, times))
    return out
