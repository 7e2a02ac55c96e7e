"""Box and mask projection between views, checked against hand-made matrices and against the
boxes and homographies that mmdet's own transforms produce."""
import math

import numpy as np
import pytest
import torch
from mmdet.datasets.transforms import RandomFlip, Resize, Rotate, ShearX, TranslateX
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks

from ssl_det.structures import (filter_degenerate, project_boxes, project_masks,
                                weak_to_strong_homography)

H, W = 60, 80
BOXES = np.array([[10., 5., 30., 25.], [40., 20., 70., 50.], [30., 28., 50., 34.]],
                 dtype=np.float32)


def _results(boxes=BOXES):
    return dict(img=np.zeros((H, W, 3), dtype=np.uint8), img_shape=(H, W), ori_shape=(H, W),
                gt_bboxes=HorizontalBoxes(boxes.copy()),
                gt_bboxes_labels=np.zeros(len(boxes), dtype=np.int64))


def _run(results, *transforms):
    for t in transforms:
        results = t(results)
    return results


# Hand-made matrices for the same steps (box convention: pixel i covers [i, i + 1]).
def _flip(width):
    return np.array([[-1, 0, width], [0, 1, 0], [0, 0, 1]], dtype=np.float64)


def _scale(sx, sy):
    return np.diag([sx, sy, 1.0])


def _rotate(deg, height, width):
    """mmdet's Rotate(mag=deg): clockwise on screen about ((w - 1) / 2, (h - 1) / 2)."""
    a = math.radians(deg)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    back = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]])
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    return back @ rot @ to_centre


def _shear_x(deg):
    return np.array([[1, math.tan(math.radians(deg)), 0], [0, 1, 0], [0, 0, 1]])


def _translate_x(pixels):
    return np.array([[1, 0, pixels], [0, 1, 0], [0, 0, 1]], dtype=np.float64)


def _corners_by_hand(boxes, matrix):
    """Enclosing box of each box's four corners, one point at a time."""
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        pts = []
        for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2)):
            u, v, w = matrix @ np.array([x, y, 1.0])
            pts.append((u / w, v / w))
        xs, ys = zip(*pts)
        out.append([min(xs), min(ys), max(xs), max(ys)])
    return np.array(out)


# All mmdet geometric ops at a fixed magnitude; reversal_prob=1.0 keeps mag's sign in mmdet.
FLIP = dict(prob=1.0, direction='horizontal')
RESIZE = dict(scale=(160, 90), keep_ratio=False)  # x2 in width, x1.5 in height
GEOM_CASES = {
    'rotate': (Rotate, dict(prob=1.0, min_mag=30.0, max_mag=30.0, reversal_prob=1.0),
               lambda h, w: _rotate(30.0, h, w)),
    'shear_x': (ShearX, dict(prob=1.0, min_mag=20.0, max_mag=20.0, reversal_prob=1.0),
                lambda h, w: _shear_x(20.0)),
    'translate_x': (TranslateX, dict(prob=1.0, min_mag=0.1, max_mag=0.1, reversal_prob=1.0),
                    lambda h, w: _translate_x(int(w * 0.1))),
}


@pytest.mark.parametrize('case', sorted(GEOM_CASES))
def test_project_boxes_matches_hand_and_mmdet(case):
    cls, kwargs, hand = GEOM_CASES[case]
    results = _run(_results(), RandomFlip(**FLIP), Resize(**RESIZE), cls(**kwargs))
    out_h, out_w = results['img_shape']
    assert (out_h, out_w) == (90, 160)
    matrix = hand(out_h, out_w) @ _scale(2.0, 1.5) @ _flip(W)
    np.testing.assert_allclose(results['homography_matrix'], matrix, atol=1e-4)

    projected = project_boxes(torch.from_numpy(BOXES), torch.from_numpy(matrix))
    assert projected.dtype == torch.float32 and projected.shape == (3, 4)
    np.testing.assert_allclose(projected.numpy(), _corners_by_hand(BOXES, matrix), atol=1e-4)
    # mmdet clips after every step; flip and resize keep boxes axis-aligned, so one geometric
    # op on top gives exactly our enclosing box, clipped.
    clipped, _ = filter_degenerate(projected, (out_h, out_w))
    np.testing.assert_allclose(clipped.numpy(), results['gt_bboxes'].numpy(), atol=1e-3)


def test_full_chain_homography_and_tighter_than_stepwise():
    transforms = [RandomFlip(**FLIP), Resize(**RESIZE)] + [
        cls(**kwargs) for cls, kwargs, _ in GEOM_CASES.values()
    ]
    results = _run(_results(), *transforms)
    out_h, out_w = results['img_shape']
    matrix = (_translate_x(int(out_w * 0.1)) @ _shear_x(20.0) @ _rotate(30.0, out_h, out_w) @
              _scale(2.0, 1.5) @ _flip(W))
    np.testing.assert_allclose(results['homography_matrix'], matrix, atol=1e-3)
    projected = project_boxes(BOXES, results['homography_matrix'])
    assert isinstance(projected, np.ndarray) and projected.dtype == np.float32
    np.testing.assert_allclose(projected, _corners_by_hand(BOXES, matrix), atol=1e-2)
    # mmdet re-encloses the box after each step, so its boxes contain the one-shot projection.
    stepwise = results['gt_bboxes'].numpy()
    clipped, _ = filter_degenerate(torch.from_numpy(projected), (out_h, out_w))
    clipped = clipped.numpy()
    assert (stepwise[:, :2] <= clipped[:, :2] + 1e-3).all()
    assert (stepwise[:, 2:] >= clipped[:, 2:] - 1e-3).all()
    assert (stepwise[:, 2:] - stepwise[:, :2] > clipped[:, 2:] - clipped[:, :2] + 1).any()


def test_rotating_a_box_by_hand():
    # 90 degrees about the origin: (x, y) -> (-y, x); box [1, 2, 3, 6] -> [-6, 1, -2, 3].
    rot90 = torch.tensor([[0., -1., 0.], [1., 0., 0.], [0., 0., 1.]])
    out = project_boxes(torch.tensor([[1., 2., 3., 6.]]), rot90)
    assert out.tolist() == [[-6., 1., -2., 3.]]
    # 45 degrees: a 2x2 box centred at 0 grows to a 2*sqrt(2) square.
    a = math.pi / 4
    rot45 = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0],
                          [0, 0, 1]])
    out = project_boxes(torch.tensor([[-1., -1., 1., 1.]]), rot45)
    torch.testing.assert_close(out, torch.full((1, 4), math.sqrt(2)) * torch.tensor(
        [-1., -1., 1., 1.]))


def test_project_boxes_empty_and_bad_shape():
    assert project_boxes(torch.zeros(0, 4), torch.eye(3)).shape == (0, 4)
    with pytest.raises(ValueError, match=r'\(N, 4\)'):
        project_boxes(torch.zeros(3, 5), torch.eye(3))
    with pytest.raises(ValueError, match=r'\(3, 3\)'):
        project_boxes(torch.zeros(3, 4), torch.eye(2))


def test_weak_to_strong_maps_weak_boxes_onto_strong_boxes():
    weak = _run(_results(), RandomFlip(**FLIP), Resize(scale=(120, 90), keep_ratio=False))
    strong = _run(_results(), Resize(scale=(160, 120), keep_ratio=False),
                  Rotate(prob=1.0, min_mag=15.0, max_mag=15.0, reversal_prob=1.0))
    weak_h = weak['homography_matrix']
    strong_h = torch.from_numpy(strong['homography_matrix'])
    weak_to_strong = weak_to_strong_homography(weak_h, strong_h)
    assert weak_to_strong.dtype == torch.float32 and weak_to_strong.shape == (3, 3)
    torch.testing.assert_close(weak_to_strong @ torch.from_numpy(weak_h), strong_h,
                               atol=1e-4, rtol=1e-5)
    # The teacher's boxes in the weak view land where the original boxes go in the strong view.
    from_weak = project_boxes(torch.from_numpy(weak['gt_bboxes'].numpy()), weak_to_strong)
    from_original = project_boxes(torch.from_numpy(BOXES), strong_h)
    torch.testing.assert_close(from_weak, from_original, atol=1e-3, rtol=0)


# Views that are not their own inverse (identity and flips are, so a mapping that runs the
# wrong way, strong -> weak, still passes with them): the weak view scales the original image
# unevenly and shifts it; the strong view scales it, rotates it by 30 degrees and shifts it.
def _shift(tx, ty):
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)


WEAK_VIEW = _shift(-6.0, 4.0) @ _scale(1.5, 1.25)
STRONG_VIEW = _shift(12.0, -5.0) @ _rotate(30.0, H, W) @ _scale(0.8, 0.8)


@pytest.mark.parametrize('as_tensor', [False, True])
def test_weak_to_strong_runs_weak_to_strong_for_non_involutive_views(as_tensor):
    """Boxes the teacher sees in the weak view land where the original boxes go in the strong
    view; the strong -> weak mapping (or any other composition) puts them elsewhere."""
    weak_h, strong_h = WEAK_VIEW, STRONG_VIEW
    if as_tensor:
        weak_h, strong_h = torch.from_numpy(weak_h), torch.from_numpy(strong_h)
    matrix = weak_to_strong_homography(weak_h, strong_h)
    np.testing.assert_allclose(matrix.numpy().astype(np.float64) @ WEAK_VIEW, STRONG_VIEW,
                               atol=1e-4)
    # The weak view only scales and shifts, so the teacher's boxes are exactly the original
    # boxes' images; their strong-view boxes enclose the rotated originals.
    weak_boxes = _corners_by_hand(BOXES, WEAK_VIEW)
    expected = _corners_by_hand(BOXES, STRONG_VIEW)
    projected = project_boxes(torch.from_numpy(weak_boxes).float(), matrix)
    np.testing.assert_allclose(projected.numpy(), expected, atol=1e-3)
    # Each wrong way round misses by far more than a pixel, so the check above is not vacuous.
    inv = np.linalg.inv
    for wrong in (WEAK_VIEW @ inv(STRONG_VIEW), inv(STRONG_VIEW) @ WEAK_VIEW,
                  inv(WEAK_VIEW) @ STRONG_VIEW):
        assert np.abs(_corners_by_hand(weak_boxes, wrong) - expected).max() > 5


def _tight_box(mask):
    ys, xs = np.nonzero(np.asarray(mask))
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def _rect_masks(boxes, height, width, dtype=np.uint8):
    masks = np.zeros((len(boxes), height, width), dtype=dtype)
    for m, (x1, y1, x2, y2) in zip(masks, boxes.astype(int)):
        m[y1:y2, x1:x2] = 1
    return masks


def test_masks_follow_boxes_under_flip_and_rotate90():
    masks = BitmapMasks(_rect_masks(BOXES, H, W), H, W)
    flipped = project_masks(masks, _flip(W), (H, W))
    assert isinstance(flipped, BitmapMasks) and flipped.masks.shape == (3, H, W)
    expected = project_boxes(BOXES, _flip(W))
    for m, box in zip(flipped.masks, expected):
        assert _tight_box(m) == box.tolist()  # exact: flip is pixel-aligned
    # Rotate 90 degrees clockwise into a (W, H) image: (x, y) -> (H - y, x).
    rot90 = np.array([[0, -1, H], [1, 0, 0], [0, 0, 1]], dtype=np.float64)
    rotated = project_masks(masks, rot90, (W, H))
    assert rotated.masks.shape == (3, W, H) and (rotated.height, rotated.width) == (W, H)
    expected = project_boxes(BOXES, rot90)
    for m, box in zip(rotated.masks, expected):
        assert _tight_box(m) == box.tolist()
    assert rotated.masks.sum() == masks.masks.sum()  # nothing lost or invented


def test_masks_follow_boxes_under_mmdet_rotate():
    side = 64
    boxes = np.array([[10., 5., 30., 25.], [36., 30., 60., 40.]], dtype=np.float32)
    results = dict(img=np.zeros((side, side, 3), np.uint8), img_shape=(side, side),
                   gt_bboxes=HorizontalBoxes(boxes.copy()))
    results = Rotate(prob=1.0, min_mag=90.0, max_mag=90.0, reversal_prob=1.0)(results)
    masks = torch.from_numpy(_rect_masks(boxes, side, side, dtype=bool))
    rotated = project_masks(masks, results['homography_matrix'], (side, side))
    assert rotated.dtype == torch.bool and rotated.shape == (2, side, side)
    for m, box in zip(rotated, results['gt_bboxes'].numpy()):
        np.testing.assert_allclose(_tight_box(m), box, atol=1.0)


def test_project_masks_keeps_type_and_handles_empty():
    masks = _rect_masks(BOXES, H, W)
    out = project_masks(masks, _scale(2.0, 2.0), (2 * H, 2 * W))
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (3, 120, 160)
    assert _tight_box(out[0]) == [20, 10, 60, 50]  # [10, 5, 30, 25] doubled
    assert out[0].sum() == 4 * masks[0].sum()
    empty = project_masks(BitmapMasks(np.zeros((0, H, W), np.uint8), H, W), np.eye(3), (7, 9))
    assert len(empty) == 0 and (empty.height, empty.width) == (7, 9)
    floats = project_masks(torch.ones(1, 4, 4), np.eye(3), (4, 6))
    assert floats.dtype == torch.float32 and floats[0, :, :4].eq(1).all()
    assert floats[0, :, 4:].eq(0).all()  # outside the source is background
    with pytest.raises(TypeError, match='BitmapMasks'):
        project_masks([[0]], np.eye(3), (4, 4))


def test_filter_degenerate_clips_and_counts():
    boxes = torch.tensor([
        [10., 10., 20., 20.],    # inside: kept as is
        [-5., 40., 15., 70.],    # partly outside: clipped to [0, 40, 15, 60], kept
        [90., 10., 120., 20.],   # wholly right of the image: zero width, dropped
        [30., 30., 30.5, 40.],   # 0.5 px wide: dropped
        [50., 50., 51., 51.],    # exactly min_size: kept
    ])
    clipped, keep = filter_degenerate(boxes, (H, W), min_size=1.0)
    assert keep.tolist() == [True, True, False, False, True]
    assert int((~keep).sum()) == 2
    assert clipped[1].tolist() == [0., 40., 15., 60.]
    assert clipped[2].tolist() == [80., 10., 80., 20.]
    assert torch.equal(boxes[0], clipped[0])
    _, keep = filter_degenerate(boxes, (H, W), min_size=12.0)
    assert keep.tolist() == [False, True, False, False, False]
    clipped, keep = filter_degenerate(torch.zeros(0, 4), (H, W))
    assert clipped.shape == (0, 4) and keep.shape == (0, )
