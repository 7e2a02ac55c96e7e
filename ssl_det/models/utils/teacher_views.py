"""More views for a teacher: the weak scene (or image) seen again flipped, rotated or
scaled, each view's boxes mapped back to the weak view exactly, and the views' boxes fused.
Point clouds: :func:`view_matrix`; images: flips within each image (:func:`flip_images`).

A point-cloud view is a dict of ``flip_x`` (``x -> -x``), ``flip_y`` (``y -> -y``), ``rot``
(radians about z) and ``scale``, applied in that order (flip, then rotation and scaling, as
``RandomFlip3D`` and ``GlobalRotScaleTrans`` do in a pipeline). :func:`view_matrix` gives
its 4×4 map from the weak view's frame to the extra view's; the extra view's boxes return
through the inverse. An image view is a flip direction of mmdet's ``RandomFlip``
(``'horizontal'``, ``'vertical'``, ``'diagonal'``), each image flipped within its own size.

:func:`fuse_views` merges the views' boxes of one scene: the highest-scoring box not yet
taken gathers every untaken box of its class whose IoU (BEV IoU in 3D) with it reaches
``iou_thr``; from each view only the best of them counts. The fused box has the
score-weighted mean centre and size (an image box: its corners) of the counted boxes, in 3D
the yaw of the highest-scoring one, and the **sum of their scores over the number of
views**: a box all views agree on keeps its mean score, one that a single view of two sees
keeps half of it. This is the consensus that makes a teacher's ensemble
surer of objects and less sure of one-view accidents; the tiers' thresholds then sort the
fused scores.
"""
from typing import Dict, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

VIEW_KEYS = ('flip_x', 'flip_y', 'rot', 'scale')


def check_view(view: Union[Dict, str]) -> Dict:
    """A view's settings with defaults filled in; unknown keys and non-positive scales are
    errors. ``'flip_x'`` and ``'flip_y'`` are short for ``dict(flip_x=True)`` and
    ``dict(flip_y=True)`` (``--cfg-options model.teacher_views=[flip_y]`` works)."""
    if view in ('flip_x', 'flip_y'):
        view = {view: True}
    if not isinstance(view, dict):
        raise TypeError(f'a teacher view is a dict of {VIEW_KEYS}, got {view!r}')
    unknown = set(view) - set(VIEW_KEYS)
    if unknown:
        raise ValueError(f'unknown teacher view keys {sorted(unknown)}; known: {VIEW_KEYS}')
    out = dict(flip_x=bool(view.get('flip_x', False)), flip_y=bool(view.get('flip_y', False)),
               rot=float(view.get('rot', 0.0)), scale=float(view.get('scale', 1.0)))
    if not out['scale'] > 0:
        raise ValueError(f"a teacher view's scale must be > 0, got {out['scale']}")
    if not (out['flip_x'] or out['flip_y'] or out['rot'] or out['scale'] != 1.0):
        raise ValueError(f'teacher view {view!r} is the weak view itself')
    return out


def check_view_iou_thr(view_iou_thr: float) -> float:
    """The IoU at which views' boxes fuse, as a float in (0, 1]."""
    if not 0 < view_iou_thr <= 1:
        raise ValueError(f'view_iou_thr must be in (0, 1], got {view_iou_thr}')
    return float(view_iou_thr)


def view_matrix(flip_x: bool = False, flip_y: bool = False, rot: float = 0.0,
                scale: float = 1.0) -> np.ndarray:
    """The 4×4 map from the weak view to the extra view: ``p' = scale * Rz(rot) @ F @ p``,
    ``F`` the flips."""
    flip = np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0, 1.0, 1.0])
    c, s = np.cos(rot), np.sin(rot)
    rot_scale = np.eye(4)
    rot_scale[:3, :3] = scale * np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return rot_scale @ flip


def fuse_views(boxes: Sequence[Tensor], scores: Sequence[Tensor], labels: Sequence[Tensor],
               iou_thr: float = 0.5, image: bool = False, return_top: bool = False
               ) -> Tuple[Tensor, ...]:
    """Fuse one scene's boxes from ``V = len(boxes)`` views, all in the same frame.

    Args:
        boxes, scores, labels: per view, (Ni, 7+) 3D boxes (or, with ``image``, (Ni, 4)
            x1y1x2y2 image boxes), (Ni,) scores and (Ni,) labels.
        iou_thr (float): IoU (BEV IoU for 3D boxes) at which a box joins a higher-scoring
            one of its class.
        image (bool): the boxes are image boxes: axis-aligned IoU, and all four
            coordinates are averaged (3D: centre and size; the yaw is the top box's).
        return_top (bool): also return each fused box's top box, as an index into the
            views' boxes concatenated in order (M,): its heading's source in 3D.

    Returns:
        tuple: fused boxes (M, 7+ or 4), scores (M,), labels (M,), highest score first, and
        the number of views that saw each (M,); with ``return_top``, the top boxes (M,).
    """
    if image:
        from mmdet.structures.bbox import bbox_overlaps as overlaps
    else:
        from ssl_det.ops import rotated_iou_bev as overlaps
    mean_cols = 4 if image else 6
    num_views = len(boxes)
    all_boxes = torch.cat(list(boxes))
    all_scores = torch.cat(list(scores))
    all_labels = torch.cat(list(labels))
    device = all_boxes.device
    if len(all_boxes) == 0:
        none = torch.zeros(0, dtype=torch.long, device=device)
        return (all_boxes, all_scores, all_labels, none) + ((none,) if return_top else ())
    view_of = np.concatenate([np.full(len(b), v) for v, b in enumerate(boxes)])
    iou = overlaps(all_boxes.double(), all_boxes.double()).cpu().numpy()
    lab = all_labels.cpu().numpy()
    score = all_scores.double().cpu().numpy()
    box = all_boxes.double().cpu().numpy()
    joins = (iou >= iou_thr) & (lab[:, None] == lab[None, :])
    taken = np.zeros(len(box), dtype=bool)
    fused_boxes, fused_scores, fused_labels, support, top = [], [], [], [], []
    for i in np.argsort(-score, kind='stable'):
        if taken[i]:
            continue
        members = np.flatnonzero(joins[i] & ~taken)
        members = np.union1d(members, [i])
        taken[members] = True
        members = members[np.argsort(-score[members], kind='stable')]
        _, first = np.unique(view_of[members], return_index=True)
        counted = members[first]  # the best box of each view
        w = score[counted] / max(score[counted].sum(), 1e-12)
        out = box[i].copy()
        out[:mean_cols] = (w[:, None] * box[counted, :mean_cols]).sum(axis=0)
        fused_boxes.append(out)
        fused_scores.append(score[counted].sum() / num_views)
        fused_labels.append(lab[i])
        support.append(len(counted))
        top.append(i)
    order = np.argsort(-np.asarray(fused_scores), kind='stable')
    out = (torch.as_tensor(np.stack(fused_boxes)[order], dtype=all_boxes.dtype, device=device),
           torch.as_tensor(np.asarray(fused_scores)[order], dtype=all_scores.dtype,
                           device=device),
           torch.as_tensor(np.asarray(fused_labels)[order], dtype=all_labels.dtype,
                           device=device),
           torch.as_tensor(np.asarray(support)[order], dtype=torch.long, device=device))
    if return_top:
        out += (torch.as_tensor(np.asarray(top)[order], dtype=torch.long, device=device),)
    return out


def log_views_per_box(support: Sequence[Tensor]) -> None:
    """Log the mean number of views that saw a fused box (``train/pseudo/views_per_box``)
    from each image's or scene's ``num_views``."""
    from mmengine.logging import MessageHub
    seen = torch.cat(list(support)).float() if len(support) else torch.zeros(0)
    MessageHub.get_current_instance().update_scalar(
        'train/pseudo/views_per_box', float(seen.mean()) if len(seen) else 0.0)


# ------------------------------------------------------------------------- images
FLIPS_2D = ('horizontal', 'vertical', 'diagonal')


def check_flips_2d(views: Sequence[str]) -> list:
    """Image teacher views: distinct flip directions (mmdet's ``RandomFlip`` names)."""
    views = list(views or ())
    bad = [v for v in views if v not in FLIPS_2D]
    if bad or len(set(views)) < len(views):
        raise ValueError(f'image teacher views are distinct flips among {FLIPS_2D}, '
                         f'got {views!r}')
    return views


def flip_images(inputs: Tensor, shapes: Sequence[Tuple[int, int]], direction: str) -> Tensor:
    """Each image of a padded (B, C, H, W) batch flipped within its own ``(h, w)``
    (``img_shape``); the padding stays where it was."""
    dims = dict(horizontal=[-1], vertical=[-2], diagonal=[-2, -1])[direction]
    out = inputs.clone()
    for i, (h, w) in enumerate(shapes):
        out[i, :, :h, :w] = inputs[i, :, :h, :w].flip(dims)
    return out


def flip_boxes_2d(boxes: Tensor, shape: Tuple[int, int], direction: str) -> Tensor:
    """x1y1x2y2 boxes of an ``(h, w)`` image flipped as :func:`flip_images` flips it (a
    flip is its own inverse: the same call maps them back)."""
    h, w = shape
    out = boxes.clone()
    if direction in ('horizontal', 'diagonal'):
        out[:, 0], out[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    if direction in ('vertical', 'diagonal'):
        out[:, 1], out[:, 3] = h - boxes[:, 3], h - boxes[:, 1]
    return out
