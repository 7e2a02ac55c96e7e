"""From teacher predictions on the weak view to pseudo instances on the strong view."""
from typing import Optional, Tuple

import numpy as np
import torch
from mmengine.structures import InstanceData
from torch import Tensor

from ssl_det.structures import (filter_degenerate, project_boxes, project_masks,
                                weak_to_strong_homography)


def _as_tensor(matrix, device) -> Tensor:
    if isinstance(matrix, np.ndarray):
        matrix = torch.from_numpy(matrix)
    return matrix.to(device=device, dtype=torch.float32)


def project_instances(instances: InstanceData, weak_homography, strong_homography,
                      strong_shape: Tuple[int, int], min_size: float = 1.0,
                      with_masks: bool = False) -> Tuple[InstanceData, int]:
    """Map instances predicted on the weak view into the strong view.

    Both homographies map the original image to their view (what mmdet's geometric
    transforms record as ``homography_matrix``). Boxes that leave the image or shrink below
    ``min_size`` pixels are dropped, and their number is returned so that callers count
    them.

    Returns:
        ``(projected instances, number dropped)``.
    """
    if len(instances) == 0:
        return instances, 0
    device = instances.bboxes.device
    matrix = weak_to_strong_homography(_as_tensor(weak_homography, device),
                                       _as_tensor(strong_homography, device))
    boxes, keep = filter_degenerate(project_boxes(instances.bboxes, matrix), strong_shape,
                                    min_size)
    projected = InstanceData()
    for key, value in instances.items():
        if key == 'bboxes':
            projected.bboxes = boxes[keep]
        elif key == 'masks':
            if with_masks:
                projected.masks = project_masks(value, matrix.cpu().numpy(),
                                                strong_shape)[keep.cpu().numpy()]
        else:
            projected[key] = value[keep]
    return projected, int((~keep).sum())


def masks_to_bitmap(masks: Optional[Tensor]):
    """Teacher mask predictions (N, H, W bool/float tensor) as mmdet BitmapMasks."""
    from mmdet.structures.mask import BitmapMasks
    array = masks.detach().cpu().numpy().astype(np.uint8)
    return BitmapMasks(array, array.shape[1], array.shape[2])
