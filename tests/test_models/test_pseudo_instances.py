"""project_instances: teacher instances on the weak view mapped onto the strong view."""
import math

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from ssl_det.models.utils.pseudo_instances import project_instances

SIZE = 64
# Original-image boxes of three objects; the third leaves the strong view.
ORIGINAL = np.array([[10., 12., 26., 30.], [34., 20., 50., 40.], [40., 50., 62., 62.]])


def _affine(scale_x, scale_y, deg, tx, ty, centre=(SIZE / 2, SIZE / 2)):
    """Scale, then rotate by ``deg`` about ``centre``, then shift by ``(tx, ty)``."""
    a = math.radians(deg)
    cx, cy = centre
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    about = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]]) @ rot @ np.array(
        [[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]]) @ about @ np.diag([scale_x, scale_y, 1])


# Neither view is its own inverse: weak = uneven scale + shift, strong = scale + 30 degree
# rotation + shift (mmdet's convention: each maps the ORIGINAL image onto the view).
WEAK = _affine(1.25, 1.1, 0.0, 3.0, -2.0)
STRONG = _affine(0.75, 0.75, 30.0, 6.0, 4.0)


def _enclosing(boxes, matrix):
    """Enclosing box of each box's four corners mapped through ``matrix``, one at a time."""
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        points = [matrix @ np.array([x, y, 1.0]) for x, y in
                  ((x1, y1), (x2, y1), (x2, y2), (x1, y2))]
        xs = [p[0] / p[2] for p in points]
        ys = [p[1] / p[2] for p in points]
        out.append([min(xs), min(ys), max(xs), max(ys)])
    return np.array(out)


@pytest.mark.parametrize('as_tensor', [False, True])
def test_project_instances_maps_weak_to_strong_not_back(as_tensor):
    """The teacher's weak-view boxes become the strong-view boxes of the same objects: the
    original box through the strong view (clipped), not through any other composition."""
    teacher = InstanceData(bboxes=torch.tensor(_enclosing(ORIGINAL, WEAK), dtype=torch.float32),
                           scores=torch.tensor([0.9, 0.8, 0.7]), labels=torch.tensor([2, 0, 1]))
    weak_h, strong_h = WEAK.astype(np.float32), STRONG.astype(np.float32)  # as in metainfo
    if as_tensor:
        weak_h, strong_h = torch.from_numpy(weak_h), torch.from_numpy(strong_h)
    strong_shape = (40, 56)
    projected, dropped = project_instances(teacher, weak_h, strong_h, strong_shape, min_size=2)

    expected = _enclosing(ORIGINAL, STRONG)
    expected[:, 0::2] = expected[:, 0::2].clip(0, strong_shape[1])
    expected[:, 1::2] = expected[:, 1::2].clip(0, strong_shape[0])
    # the third object ends up (all but a sliver) below the strong view: dropped and counted
    assert expected[2, 3] - expected[2, 1] < 2 and dropped == 1
    torch.testing.assert_close(projected.bboxes,
                               torch.tensor(expected[:2], dtype=torch.float32),
                               atol=1e-3, rtol=0)
    assert projected.labels.tolist() == [2, 0]
    torch.testing.assert_close(projected.scores, torch.tensor([0.9, 0.8]))
    # The strong -> weak mapping lands somewhere else entirely.
    backwards = _enclosing(_enclosing(ORIGINAL[:2], WEAK), WEAK @ np.linalg.inv(STRONG))
    assert np.abs(backwards - expected[:2]).max() > 5


def test_project_instances_clips_boxes_and_warps_masks_with_the_weak_to_strong_map():
    """Masks go through the same weak -> strong map as their boxes (a 30 degree rotation
    and scale here, not its inverse), onto the strong image's shape; a box that sticks
    out of the strong view is clipped to it, one left with a sliver is dropped."""
    weak_shape, strong_shape = (70, 84), (30, 44)
    weak_boxes = np.array([[16., 11., 36., 31.], [46., 20., 66., 42.], [53., 53., 80., 66.]])
    masks = np.zeros((3, ) + weak_shape, np.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, weak_boxes.astype(int)):
        mask[y1:y2, x1:x2] = 1  # each mask fills its box
    teacher = InstanceData(bboxes=torch.tensor(weak_boxes, dtype=torch.float32),
                           masks=torch.from_numpy(masks), labels=torch.tensor([2, 0, 1]))
    projected, dropped = project_instances(teacher, WEAK.astype(np.float32),
                                           STRONG.astype(np.float32), strong_shape,
                                           min_size=2, with_masks=True)

    expected = _enclosing(weak_boxes, STRONG @ np.linalg.inv(WEAK))
    assert expected[1, 2] > strong_shape[1] + 5 and expected[1, 3] > strong_shape[0] + 5
    expected[:, 0::2] = expected[:, 0::2].clip(0, strong_shape[1])
    expected[:, 1::2] = expected[:, 1::2].clip(0, strong_shape[0])
    assert dropped == 1 and projected.labels.tolist() == [2, 0]
    torch.testing.assert_close(projected.bboxes, torch.tensor(expected[:2], dtype=torch.float32),
                               atol=1e-3, rtol=0)
    warped = np.asarray(projected.masks)
    assert warped.shape == (2, ) + strong_shape
    for mask, box in zip(warped, expected[:2]):
        ys, xs = np.nonzero(mask)
        # the warped mask fills its (clipped) box up to a pixel of nearest-neighbour rounding
        mask_box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
        assert np.abs(mask_box - box).max() <= 1.5, (mask_box, box)
