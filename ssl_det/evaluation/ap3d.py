"""Average precision of rotated 3D boxes (KITTI-style BEV and 3D AP, R11 and R40) on the CPU.

Boxes are ssl_det's ``(x, y, z, dx, dy, dz, yaw)`` (LiDAR frame, metres, z = box centre, yaw
counter-clockwise from +x in radians; see :mod:`ssl_det.structures.box3d`); overlaps come from
:func:`ssl_det.ops.rotated_iou_bev` (``'bev'``) and :func:`ssl_det.ops.iou_3d` (``'3d'``).

**Matching.** Within a frame the predictions of a class are taken in descending score order
(stable: ties keep their input order); each one takes the still unmatched ground-truth box of
its class with the highest IoU, if that IoU is ``>= threshold`` (ties go to the lower GT index).
A prediction that takes a non-ignored box is a true positive, one that takes an *ignored* box
is dropped (neither TP nor FP; the ignored box is then used up, so a second prediction on it
is a FP), one that takes nothing is a false positive. Ignored boxes are not false negatives.
Unlike the KITTI devkit, which matches ground truth first at every score threshold, this is
the VOC/COCO score-order greedy matching; the two agree except in crowded scenes.

**Precision/recall and AP.** The predictions of all frames are sorted by descending score
(stable; frames in input order) and every kept prediction is one point of the curve:
``precision = TP / (TP + FP)`` and ``recall = TP / num_gt`` (``num_gt``: non-ignored boxes).
The interpolated precision at recall ``r`` is the highest precision of a point with recall
``>= r`` (0 if there is none); AP is its mean at ``r = 0, 1/10, ..., 1`` (11 points, KITTI's
old R11) or ``r = 1/40, 2/40, ..., 1`` (40 points, KITTI's R40). Recall is compared with
``r`` in exact integer arithmetic. A class without non-ignored ground truth has AP = NaN (and
is left out of class means, see :func:`class_mean`); a class with ground truth but no
prediction has AP = 0.

**Which boxes count.** A ground-truth box is ignored when its frame's ``gt_ignore`` flag is
set, when a difficulty level ``L`` is evaluated and its difficulty is above ``L`` or unknown
(< 0; KITTI's easy/moderate/hard are levels 0/1/2), or when a distance range ``[lo, hi)`` is
evaluated and its BEV range ``sqrt(x^2 + y^2)`` lies outside. Predictions are never filtered by
difficulty; a prediction whose centre lies outside the distance range is dropped before
matching.
"""
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ssl_det.ops import iou_3d, rotated_iou_bev

BOX_TYPES = ('bev', '3d')
RECALL_POINTS = (11, 40)
TP, FP, DROPPED = 1, 0, -1

Difficulty = Optional[int]
DistanceRange = Optional[Tuple[float, float]]


@dataclass
class AP3DResult:
    """What :func:`eval_ap3d` returns.

    Attributes:
        ap: box type -> AP array of shape (S, C, D, G, P): threshold set, class, difficulty
            level, distance range, recall-point count, in the order they were given; NaN
            where a class has no non-ignored ground truth.
        num_gt: (C, D, G) int, the non-ignored ground-truth boxes behind each AP.
        num_pred: (C, G) int, the predictions of each class inside each distance range.
    """
    ap: Dict[str, np.ndarray]
    num_gt: np.ndarray
    num_pred: np.ndarray


def frame_ious(pred_boxes: np.ndarray, gt_boxes: np.ndarray, box_type: str) -> np.ndarray:
    """(K, M) float64 IoU of K predicted and M ground-truth boxes of one frame.

    Args:
        pred_boxes: (K, >= 7) boxes; only the first 7 columns are used.
        gt_boxes: (M, >= 7) boxes.
        box_type: ``'bev'`` (rotated footprints) or ``'3d'`` (footprint x z overlap).
    """
    if box_type not in BOX_TYPES:
        raise ValueError(f'box_type must be one of {BOX_TYPES}, got {box_type!r}')
    a = torch.from_numpy(np.ascontiguousarray(pred_boxes[:, :7], dtype=np.float64))
    b = torch.from_numpy(np.ascontiguousarray(gt_boxes[:, :7], dtype=np.float64))
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    kernel = rotated_iou_bev if box_type == 'bev' else iou_3d
    return kernel(a, b).numpy()


def greedy_match(ious: np.ndarray, thresholds, gt_ignore: np.ndarray,
                 pred_valid: np.ndarray) -> np.ndarray:
    """Greedy score-order matching of F frames at once, for a batch of settings.

    Leading (batch) dimensions of the arguments broadcast against each other.

    Args:
        ious: (..., F, K, M) IoU; along K the predictions of each frame are in descending
            score order. Padding ground truth must have IoU ``-inf`` (never matched).
        thresholds: (...) minimal IoU of a match, each in (0, 1].
        gt_ignore: (..., F, M) bool, ignored ground truth.
        pred_valid: (..., F, K) bool; False for padding and for dropped predictions.

    Returns:
        (..., F, K) int8: ``TP`` (1), ``FP`` (0) or ``DROPPED`` (-1) for each prediction.
    """
    ious = np.asarray(ious, dtype=np.float64)
    num_frames, num_pred, num_gt = ious.shape[-3:]
    thresholds = np.asarray(thresholds, dtype=np.float64)
    batch = np.broadcast_shapes(ious.shape[:-3], thresholds.shape, gt_ignore.shape[:-2],
                                pred_valid.shape[:-2])
    valid = np.broadcast_to(pred_valid, batch + (num_frames, num_pred))
    if num_gt == 0:
        return np.where(valid, FP, DROPPED).astype(np.int8)
    thr = np.broadcast_to(thresholds, batch)[..., None]
    ignore = np.broadcast_to(gt_ignore, batch + (num_frames, num_gt))
    matched = np.zeros(batch + (num_frames, num_gt), dtype=bool)
    outcome = np.full(batch + (num_frames, num_pred), DROPPED, dtype=np.int8)
    gt_index = np.arange(num_gt)
    for k in range(num_pred):
        row = np.where(matched, -np.inf, ious[..., k, :])
        best = row.argmax(axis=-1)[..., None]
        hit = valid[..., k] & (np.take_along_axis(row, best, -1)[..., 0] >= thr)
        hit_ignored = np.take_along_axis(ignore, best, -1)[..., 0]
        outcome[..., k] = np.where(hit, np.where(hit_ignored, DROPPED, TP),
                                   np.where(valid[..., k], FP, DROPPED))
        matched |= hit[..., None] & (gt_index == best)
    return outcome


def interpolated_ap(outcomes: np.ndarray, num_gt, num_points: int) -> np.ndarray:
    """AP from match outcomes sorted by descending score, with ``num_points`` recall samples.

    Args:
        outcomes: (..., N) int8 ``TP``/``FP``/``DROPPED`` (dropped ones are skipped).
        num_gt: (...) int, non-ignored ground-truth boxes.
        num_points: 11 (r = 0, 0.1, ..., 1) or 40 (r = 1/40, ..., 1).

    Returns:
        (...) float64 AP; NaN where ``num_gt`` is 0.
    """
    if num_points not in RECALL_POINTS:
        raise ValueError(f'num_points must be one of {RECALL_POINTS}, got {num_points!r}')
    outcomes = np.asarray(outcomes)
    num_gt = np.broadcast_to(np.asarray(num_gt, dtype=np.int64), outcomes.shape[:-1])
    steps = np.arange(num_points) if num_points == 11 else np.arange(1, num_points + 1)
    denominator = num_points - 1 if num_points == 11 else num_points
    if outcomes.shape[-1] == 0:
        ap = np.zeros(outcomes.shape[:-1])
    else:
        tp = np.cumsum(outcomes == TP, axis=-1)
        kept = np.cumsum(outcomes != DROPPED, axis=-1)
        precision = tp / np.maximum(kept, 1)
        # A dropped prediction repeats the previous point: it can raise no maximum.
        best_after = np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]
        best_after = np.concatenate([best_after, np.zeros(best_after.shape[:-1] + (1,))], -1)
        # recall >= step / denominator  <=>  tp >= ceil(step * num_gt / denominator), exactly;
        # tp never decreases, so the points that reach a step form a suffix.
        need = -(-(steps * num_gt[..., None]) // denominator)
        first = np.array([np.searchsorted(t, n) for t, n in
                          zip(tp.reshape(-1, tp.shape[-1]), need.reshape(-1, len(steps)))],
                         dtype=np.int64).reshape(need.shape)
        ap = np.take_along_axis(best_after, first, -1).mean(-1)
    return np.where(num_gt > 0, ap, np.nan)


def class_mean(ap: np.ndarray, axis: int = 1) -> np.ndarray:
    """Mean over classes (axis ``axis``) of the classes that have ground truth (NaN skipped);
    NaN where no class has any."""
    ap = np.asarray(ap, dtype=np.float64)
    count = np.isfinite(ap).sum(axis)
    return np.where(count > 0, np.nansum(ap, axis) / np.maximum(count, 1), np.nan)


def _frame_arrays(frame: Mapping, i: int, num_classes: int, is_gt: bool) -> Dict[str, np.ndarray]:
    """Validated float64/int64 arrays of one frame; errors name the frame and the field."""
    kind = 'ground truth' if is_gt else 'predictions'
    name = f'{kind} of frame #{i}' + (f" ({frame['frame_id']})" if 'frame_id' in frame else '')
    boxes = np.asarray(frame['bboxes_3d'], dtype=np.float64)
    boxes = boxes.reshape(0, 7) if boxes.size == 0 else boxes
    if boxes.ndim != 2 or boxes.shape[1] < 7:
        raise ValueError(f'{name}: bboxes_3d must be (N, 7: x, y, z, dx, dy, dz, yaw), got '
                         f'shape {boxes.shape}')
    if not np.isfinite(boxes[:, :7]).all():
        raise ValueError(f'{name}: bboxes_3d holds NaN/Inf')
    out = dict(bboxes_3d=boxes[:, :7])
    fields = ['labels_3d'] + (['difficulty', 'gt_ignore'] if is_gt else ['scores_3d'])
    for field in fields:
        if field not in frame or frame[field] is None:
            if field == 'labels_3d' or field == 'scores_3d':
                raise KeyError(f'{name}: missing {field!r}')
            continue
        value = np.asarray(frame[field]).reshape(-1)
        if len(value) != len(boxes):
            raise ValueError(f'{name}: {field} has {len(value)} entries for {len(boxes)} boxes')
        out[field] = value
    labels = out['labels_3d']
    if len(labels) and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0
                        or labels.max() >= num_classes):
        raise ValueError(f'{name}: labels_3d must be integers in [0, {num_classes}) '
                         f'(the classes of dataset_meta), got {np.unique(labels).tolist()}')
    if 'scores_3d' in out and not np.isfinite(out['scores_3d']).all():
        raise ValueError(f'{name}: scores_3d holds NaN/Inf')
    return out


def _check_settings(thresholds, num_classes, box_types, recall_points, difficulties,
                    distance_ranges) -> np.ndarray:
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 2 or thr.shape[1] != num_classes:
        raise ValueError(f'iou_thresholds must be (num_sets, num_classes={num_classes}), got '
                         f'shape {thr.shape}')
    if not ((thr > 0) & (thr <= 1)).all():
        raise ValueError(f'IoU thresholds must be in (0, 1], got {thr.tolist()}')
    for name, values, allowed in (('box_types', box_types, BOX_TYPES),
                                  ('recall_points', recall_points, RECALL_POINTS)):
        if not values or any(v not in allowed for v in values):
            raise ValueError(f'{name} must be a non-empty subset of {allowed}, got {values!r}')
    for level in difficulties:
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)
                                  or level < 0):
            raise ValueError(f'difficulty levels must be None or ints >= 0 (KITTI: 0 easy, '
                             f'1 moderate, 2 hard), got {level!r}')
    for rng in distance_ranges:
        if rng is not None and not (len(rng) == 2 and 0 <= rng[0] < rng[1]):
            raise ValueError(f'distance ranges must be None or (lo, hi) with 0 <= lo < hi '
                             f'metres, got {rng!r}')
    return thr


def _in_range(boxes: np.ndarray, ranges: Sequence[DistanceRange]) -> np.ndarray:
    """(G, N) bool: BEV range of the centres in ``[lo, hi)``; all True for ``None``."""
    dist = np.hypot(boxes[:, 0], boxes[:, 1])
    return np.stack([np.ones(len(boxes), bool) if r is None else (dist >= r[0]) & (dist < r[1])
                     for r in ranges])


def eval_ap3d(gt_frames: Sequence[Mapping], pred_frames: Sequence[Mapping], num_classes: int,
              iou_thresholds, box_types: Sequence[str] = BOX_TYPES,
              recall_points: Sequence[int] = (40, 11),
              difficulties: Sequence[Difficulty] = (None,),
              distance_ranges: Sequence[DistanceRange] = (None,)) -> AP3DResult:
    """BEV/3D AP of every class for every threshold set, difficulty level and distance range.

    Args:
        gt_frames: one mapping per frame: ``bboxes_3d`` (M, 7), ``labels_3d`` (M,) ints in
            ``[0, num_classes)``, optional ``difficulty`` (M,) ints (-1 unknown), optional
            ``gt_ignore`` (M,) bool, optional ``frame_id`` (used in error messages).
            Arrays or CPU tensors.
        pred_frames: one mapping per frame, same order: ``bboxes_3d`` (K, 7), ``scores_3d``
            (K,), ``labels_3d`` (K,).
        num_classes: number of classes C.
        iou_thresholds: (S, C) minimal IoU of a match per threshold set and class, in (0, 1].
        box_types: any of ``'bev'``, ``'3d'``. Defaults to both.
        recall_points: any of 11, 40. Defaults to ``(40, 11)``.
        difficulties: levels to evaluate; ``None`` counts every box (``difficulty`` may then
            be absent), level ``L`` counts boxes with ``0 <= difficulty <= L`` and ignores the
            rest. Defaults to ``(None,)``.
        distance_ranges: ``(lo, hi)`` metre ranges ``[lo, hi)`` of the BEV centre distance,
            or ``None`` for all. Defaults to ``(None,)``.

    Returns:
        AP3DResult: see its docstring; axes follow the order of the arguments.
    """
    if len(gt_frames) != len(pred_frames):
        raise ValueError(f'{len(gt_frames)} ground-truth frames but {len(pred_frames)} '
                         'prediction frames')
    thr = _check_settings(iou_thresholds, num_classes, box_types, recall_points, difficulties,
                          distance_ranges)
    gts = [_frame_arrays(f, i, num_classes, True) for i, f in enumerate(gt_frames)]
    preds = [_frame_arrays(f, i, num_classes, False) for i, f in enumerate(pred_frames)]
    if any(level is not None for level in difficulties):
        for i, gt in enumerate(gts):
            if 'difficulty' not in gt and len(gt['bboxes_3d']):
                raise ValueError(f'ground truth of frame #{i} has no difficulty but difficulty '
                                 f'levels {list(difficulties)} were requested; add gt '
                                 'difficulty or evaluate with difficulties=None')
    # One kernel call per frame and box type, shared by every class, threshold and filter.
    ious = {bt: [frame_ious(p['bboxes_3d'], g['bboxes_3d'], bt) for p, g in zip(preds, gts)]
            for bt in box_types}
    shape = (len(thr), num_classes, len(difficulties), len(distance_ranges), len(recall_points))
    result = AP3DResult(ap={bt: np.full(shape, np.nan) for bt in box_types},
                        num_gt=np.zeros(shape[1:4], np.int64),
                        num_pred=np.zeros((num_classes, len(distance_ranges)), np.int64))
    for c in range(num_classes):
        _eval_class(c, gts, preds, ious, thr[:, c], recall_points, difficulties,
                    distance_ranges, result)
    return result


def _eval_class(c: int, gts, preds, ious, thr, recall_points, difficulties, distance_ranges,
                result: AP3DResult) -> None:
    """Fill ``result`` for class ``c``: pad every frame to (K, M), match all settings at once."""
    pred_idx, gt_idx = [], []
    for p, g in zip(preds, gts):
        own = np.flatnonzero(p['labels_3d'] == c)
        pred_idx.append(own[np.argsort(-p['scores_3d'][own], kind='stable')])
        gt_idx.append(np.flatnonzero(g['labels_3d'] == c))
    num_frames, num_d, num_g = len(gts), len(difficulties), len(distance_ranges)
    k_max = max((len(i) for i in pred_idx), default=0)
    m_max = max((len(i) for i in gt_idx), default=0)
    scores = np.full((num_frames, k_max), -np.inf)
    pred_valid = np.zeros((num_g, num_frames, k_max), bool)
    gt_ignore = np.ones((num_d, num_g, num_frames, m_max), bool)
    gt_real = np.zeros((num_frames, m_max), bool)
    for f, (p, g, pi, gi) in enumerate(zip(preds, gts, pred_idx, gt_idx)):
        scores[f, :len(pi)] = p['scores_3d'][pi]
        pred_valid[:, f, :len(pi)] = _in_range(p['bboxes_3d'][pi], distance_ranges)
        gt_real[f, :len(gi)] = True
        base = np.zeros(len(gi), bool)
        if 'gt_ignore' in g:
            base |= g['gt_ignore'][gi].astype(bool)
        outside = ~_in_range(g['bboxes_3d'][gi], distance_ranges)
        for d, level in enumerate(difficulties):
            ign = base.copy()
            if level is not None:
                diff = g['difficulty'][gi] if len(gi) else np.zeros(0, np.int64)
                ign |= (diff < 0) | (diff > level)
            gt_ignore[d, :, f, :len(gi)] = ign[None] | outside
    num_gt = (gt_real & ~gt_ignore).sum(axis=(-2, -1))  # (D, G)
    result.num_gt[c] = num_gt
    result.num_pred[c] = pred_valid.sum(axis=(-2, -1))
    flat_scores = scores.reshape(-1)
    real = np.flatnonzero(np.isfinite(flat_scores))
    order = real[np.argsort(-flat_scores[real], kind='stable')]
    for bt, frames in ious.items():
        padded = np.full((num_frames, k_max, m_max), -np.inf)
        for f, (pi, gi) in enumerate(zip(pred_idx, gt_idx)):
            padded[f, :len(pi), :len(gi)] = frames[f][np.ix_(pi, gi)]
        outcome = greedy_match(padded, thr[:, None, None], gt_ignore[None],
                               pred_valid[None, None])  # (S, D, G, F, K)
        outcome = outcome.reshape(outcome.shape[:3] + (-1,))[..., order]
        for r, points in enumerate(recall_points):
            result.ap[bt][:, c, :, :, r] = interpolated_ap(outcome, num_gt[None], points)
