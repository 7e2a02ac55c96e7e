"""3D boxes: ssl_det's one convention, conversions at the edges, and exact mapping between views.

**The convention.** A box is ``(x, y, z, dx, dy, dz, yaw)`` in the LiDAR frame (x forward,
y left, z up): ``(x, y, z)`` is the box *centre*, ``dx`` lies along the box's heading,
``dy`` across it, ``dz`` is the height, and ``yaw`` is the heading's angle counter-clockwise
from +x (a box's local corners are rotated by ``[[cos, -sin], [sin, cos]]``). This is the
convention of :mod:`ssl_det.ops` (``rotated_iou_bev``, ``iou_3d``). Every other convention
(mmdet3d's bottom-centre LiDAR boxes, KITTI camera labels) is converted here, never in a
model.

**Mapping between views.** A point-cloud augmentation chain (flips, rotation about z,
scaling, translation) is one affine map ``p' = A p + t``, recorded as a 4×4 matrix
(``results['lidar_aug_matrix']``, composed like 2D's ``homography_matrix``). A box maps
through it exactly by moving its centre and its heading *vector*: ``yaw' = atan2(A h)``
with ``h = (cos yaw, sin yaw, 0)``. A flip's sign change of yaw (mirror images turn the other
way) falls out of that, so the matrix alone is enough; no separate flip flag is needed. The
sizes scale by the lengths of ``A`` applied to the box's axes, which is exact when the xy
block of ``A`` is a similarity (rotation/reflection times one scale), as every rigid
augmentation is; anything else would turn a box into a parallelogram and is refused.

Functions accept numpy arrays or torch tensors and return the same kind.
"""
from typing import Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

BOX3D_DIM = 7


def _np(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _like(out: np.ndarray, ref: ArrayLike) -> ArrayLike:
    if isinstance(ref, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(out)).to(device=ref.device, dtype=ref.dtype)
    ref_dtype = np.asarray(ref).dtype
    return out.astype(ref_dtype if np.issubdtype(ref_dtype, np.floating) else np.float64,
                      copy=False)


def _boxes(boxes: ArrayLike, name: str = 'boxes') -> np.ndarray:
    arr = _np(boxes).astype(np.float64, copy=False)
    if arr.ndim != 2 or arr.shape[1] < BOX3D_DIM:
        raise ValueError(f'{name} must be (N, 7: x, y, z, dx, dy, dz, yaw) boxes, got shape '
                         f'{tuple(arr.shape)}')
    return arr


def limit_period(angle: ArrayLike, offset: float = 0.5, period: float = 2 * np.pi) -> ArrayLike:
    """Wrap ``angle`` into ``[-offset * period, (1 - offset) * period)``."""
    return angle - np.floor(angle / period + offset) * period if not isinstance(
        angle, torch.Tensor) else angle - torch.floor(angle / period + offset) * period


def check_boxes3d(boxes: ArrayLike, where: str = '') -> None:
    """Raise ``ValueError`` for non-finite boxes or boxes with a non-positive size."""
    arr = _boxes(boxes)
    where = f' in {where}' if where else ''
    bad = ~np.isfinite(arr[:, :BOX3D_DIM]).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f'{int(bad.sum())} 3D box(es) with NaN/Inf{where}, first #{i}: '
                         f'{arr[i, :BOX3D_DIM].tolist()}')
    bad = (arr[:, 3:6] <= 0).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f'{int(bad.sum())} 3D box(es) with a non-positive size (dx, dy, dz)'
                         f'{where}, first #{i}: {arr[i, :BOX3D_DIM].tolist()}')


# ----------------------------------------------------------------------------- conventions
def from_mmdet3d_lidar(boxes: ArrayLike) -> ArrayLike:
    """mmdet3d 1.x ``LiDARInstance3DBoxes`` tensor (z = bottom centre) → ssl_det boxes.

    mmdet3d 1.x LiDAR boxes have the same axes, sizes and yaw as ours; only ``z`` differs
    (the bottom face's centre, origin ``(0.5, 0.5, 0)``). Extra columns (velocity) are kept.
    """
    arr = _boxes(boxes).copy()
    arr[:, 2] += arr[:, 5] / 2
    return _like(arr, boxes)


def to_mmdet3d_lidar(boxes: ArrayLike) -> ArrayLike:
    """ssl_det boxes → mmdet3d 1.x LiDAR boxes (z = bottom centre); inverse of the above."""
    arr = _boxes(boxes).copy()
    arr[:, 2] -= arr[:, 5] / 2
    return _like(arr, boxes)


def kitti_label_to_camera_boxes(dims_hwl: ArrayLike, location: ArrayLike,
                                rotation_y: ArrayLike) -> np.ndarray:
    """KITTI ``label_2`` fields → camera boxes ``(x, y, z, l, h, w, ry)``.

    KITTI writes ``h w l`` then the bottom centre ``x y z`` in the rectified camera frame
    (x right, y down, z forward) then ``rotation_y``; mmdet3d's camera boxes reorder the
    sizes to ``(l, h, w)``, which is what this returns (bottom centre kept).
    """
    hwl = _np(dims_hwl).reshape(-1, 3).astype(np.float64)
    loc = _np(location).reshape(-1, 3).astype(np.float64)
    ry = _np(rotation_y).reshape(-1, 1).astype(np.float64)
    return np.concatenate([loc, hwl[:, [2, 0, 1]], ry], axis=1)


def camera_to_lidar(cam_boxes: ArrayLike, lidar2cam: ArrayLike) -> ArrayLike:
    """Camera boxes ``(x, y, z, l, h, w, ry)`` (bottom centre, rectified camera frame, as in
    KITTI labels and mmdet3d 1.x KITTI infos) → ssl_det LiDAR boxes.

    ``lidar2cam`` is the 4×4 map from LiDAR to rectified camera coordinates
    (``R0_rect @ Tr_velo_to_cam`` for KITTI; mmdet3d's ``images['CAM2']['lidar2cam']``).
    The centre and the heading vector ``(cos ry, 0, -sin ry)`` are moved by its inverse, so
    a calibration whose axes are not an exact permutation is still handled exactly (mmdet3d
    assumes ``yaw = -ry - pi/2``, which holds for an ideal calibration only).
    """
    cam = _boxes(cam_boxes, 'cam_boxes')
    cam2lidar = np.linalg.inv(_np(lidar2cam).astype(np.float64).reshape(4, 4))
    l, h, w, ry = cam[:, 3], cam[:, 4], cam[:, 5], cam[:, 6]
    centre = cam[:, :3].copy()
    centre[:, 1] -= h / 2  # camera y points down: the centre is h/2 above the bottom
    centre_l = centre @ cam2lidar[:3, :3].T + cam2lidar[:3, 3]
    heading_c = np.stack([np.cos(ry), np.zeros_like(ry), -np.sin(ry)], axis=1)
    heading_l = heading_c @ cam2lidar[:3, :3].T
    yaw = np.arctan2(heading_l[:, 1], heading_l[:, 0])
    out = np.concatenate([centre_l, np.stack([l, w, h, yaw], axis=1), cam[:, 7:]], axis=1)
    return _like(out, cam_boxes)


def lidar_to_camera(boxes: ArrayLike, lidar2cam: ArrayLike) -> ArrayLike:
    """ssl_det LiDAR boxes → camera boxes ``(x, y, z, l, h, w, ry)``; inverse of
    :func:`camera_to_lidar`."""
    arr = _boxes(boxes)
    mat = _np(lidar2cam).astype(np.float64).reshape(4, 4)
    dx, dy, dz, yaw = arr[:, 3], arr[:, 4], arr[:, 5], arr[:, 6]
    centre_c = arr[:, :3] @ mat[:3, :3].T + mat[:3, 3]
    centre_c[:, 1] += dz / 2
    heading_l = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], axis=1)
    heading_c = heading_l @ mat[:3, :3].T
    ry = np.arctan2(-heading_c[:, 2], heading_c[:, 0])
    out = np.concatenate([centre_c, np.stack([dx, dz, dy, ry], axis=1), arr[:, 7:]], axis=1)
    return _like(out, boxes)


# ----------------------------------------------------------------------------- geometry
def box3d_corners(boxes: ArrayLike) -> ArrayLike:
    """(N, 8, 3) corners: bottom face counter-clockwise from (+dx/2, +dy/2), then the top."""
    arr = _boxes(boxes)
    unit = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64) / 2
    local = unit[None] * arr[:, None, 3:5]
    c, s = np.cos(arr[:, 6])[:, None], np.sin(arr[:, 6])[:, None]
    xy = np.stack([c * local[..., 0] - s * local[..., 1],
                   s * local[..., 0] + c * local[..., 1]], axis=-1) + arr[:, None, :2]
    z0 = (arr[:, 2] - arr[:, 5] / 2)[:, None, None]
    z1 = (arr[:, 2] + arr[:, 5] / 2)[:, None, None]
    bottom = np.concatenate([xy, np.broadcast_to(z0, xy[..., :1].shape)], axis=-1)
    top = np.concatenate([xy, np.broadcast_to(z1, xy[..., :1].shape)], axis=-1)
    return _like(np.concatenate([bottom, top], axis=1), boxes)


def points_in_boxes(points: ArrayLike, boxes: ArrayLike, margin: float = 0.0) -> ArrayLike:
    """(N, M) bool: point ``n`` lies inside box ``m`` (faces included, grown by ``margin``).

    Exact in float64: a point is inside when, in the box's frame, ``|x| <= dx / 2 + margin``,
    ``|y| <= dy / 2 + margin`` and ``|z - z_box| <= dz / 2 + margin``. With many points and
    few boxes (a scene's points or a BEV grid against its boxes) each box first keeps the
    points of its axis-aligned BEV bound and its z range (a slab of the points sorted by x),
    and the exact test runs on those only; the result is the same as testing every pair
    (:func:`_points_in_boxes_dense`).
    """
    pts = _np(points)[:, :3].astype(np.float64)
    arr = _boxes(boxes)
    n, m = len(pts), len(arr)
    if n * m <= 16384 or m > 64:
        inside = _points_in_boxes_dense(pts, arr, margin)
    else:
        inside = np.zeros((n, m), dtype=bool)
        c, s = np.cos(arr[:, 6]), np.sin(arr[:, 6])
        half = arr[:, 3:6] / 2 + margin
        # the rotated rectangle's axis-aligned extent, grown by far more than the rounding of
        # the exact test (~1e-15 relative), so that the bound never drops a point it keeps
        slack = 1e-9 * (1.0 + np.abs(arr[:, :2]).max(axis=1) + half[:, :2].max(axis=1))
        ext_x = np.abs(c) * half[:, 0] + np.abs(s) * half[:, 1] + slack
        ext_y = np.abs(s) * half[:, 0] + np.abs(c) * half[:, 1] + slack
        order = np.argsort(pts[:, 0], kind='stable')
        xs = pts[order, 0]
        for k in range(m):
            lo = np.searchsorted(xs, arr[k, 0] - ext_x[k], side='left')
            hi = np.searchsorted(xs, arr[k, 0] + ext_x[k], side='right')
            slab = order[lo:hi]
            near = ((np.abs(pts[slab, 1] - arr[k, 1]) <= ext_y[k])
                    & (np.abs(pts[slab, 2] - arr[k, 2]) <= half[k, 2] + slack[k]))
            cand = slab[near]
            if len(cand):
                inside[cand, k] = _points_in_boxes_dense(pts[cand], arr[k:k + 1], margin)[:, 0]
    if isinstance(points, torch.Tensor):
        return torch.from_numpy(inside).to(points.device)
    return inside


def top_gaps(points: ArrayLike, boxes: ArrayLike) -> ArrayLike:
    """(M,) how far below each box's top its highest point inside lies (metres, >= 0); a box
    with no point inside gets its full height ``dz``. A box fitted to an object whose top the
    sensor sees (a person's head, a car's roof) has a small gap; a box of a taller class drawn
    over a shorter thing (a person's box on a knee-high post) a large one."""
    pts = _np(points)[:, :3].astype(np.float64)
    arr = _boxes(boxes)
    gaps = arr[:, 5].copy()
    if len(pts) and len(arr):
        inside = _np(points_in_boxes(pts, arr))
        highest = np.where(inside, pts[:, 2:3], -np.inf).max(axis=0)
        seen = inside.any(axis=0)
        top = arr[:, 2] + arr[:, 5] / 2
        gaps[seen] = np.clip(top[seen] - highest[seen], 0.0, None)
    return _like(gaps, boxes)


def top_support(points: ArrayLike, boxes: ArrayLike, scale: float) -> ArrayLike:
    """(M,) ``exp(-gap / (scale * dz))`` of each box, ``gap`` its :func:`top_gaps`: 1 for a
    box whose top its points reach, lower the emptier the box stands above them."""
    gaps = _np(top_gaps(points, boxes))
    height = np.maximum(_boxes(boxes)[:, 5], 1e-3)
    return _like(np.exp(-gaps / (scale * height)), boxes)


def _points_in_boxes_dense(pts: np.ndarray, arr: np.ndarray, margin: float) -> np.ndarray:
    """:func:`points_in_boxes` on every (point, box) pair: (N, 3) and (M, 7+) float64."""
    rel = pts[:, None, :] - arr[None, :, :3]
    c, s = np.cos(arr[:, 6]), np.sin(arr[:, 6])
    lx = rel[..., 0] * c + rel[..., 1] * s
    ly = -rel[..., 0] * s + rel[..., 1] * c
    half = arr[:, 3:6] / 2 + margin
    return ((np.abs(lx) <= half[:, 0]) & (np.abs(ly) <= half[:, 1])
            & (np.abs(rel[..., 2]) <= half[:, 2]))


# ----------------------------------------------------------------------------- mapping
def transform_points(points: ArrayLike, matrix: ArrayLike) -> ArrayLike:
    """Apply a 4×4 affine map to the xyz columns of (N, C) points; other columns are kept."""
    mat = _np(matrix).astype(np.float64).reshape(4, 4)
    if isinstance(points, torch.Tensor):
        m = torch.as_tensor(mat, dtype=points.dtype, device=points.device)
        out = points.clone()
        out[:, :3] = points[:, :3] @ m[:3, :3].T + m[:3, 3]
        return out
    out = np.array(points, copy=True)
    out[:, :3] = (out[:, :3].astype(np.float64) @ mat[:3, :3].T + mat[:3, 3]).astype(out.dtype)
    return out


def _check_similarity(mat: np.ndarray, atol: float = 1e-6) -> None:
    a = mat[:2, :2]
    gram = a.T @ a
    scale2 = gram[0, 0]
    if (abs(gram[0, 1]) > atol * max(scale2, 1.0) or abs(gram[1, 1] - scale2) > atol * max(scale2, 1.0)
            or np.abs(mat[:2, 2]).max() > atol or np.abs(mat[2, :2]).max() > atol
            or np.abs(mat[3] - np.array([0, 0, 0, 1])).max() > atol or mat[2, 2] <= 0):
        raise ValueError('a 3D box maps to a box only through a rotation about z, flips, '
                         'translation and scaling (a similarity in xy, positive z scale); '
                         f'got matrix {mat.tolist()}')


def transform_boxes3d(boxes: ArrayLike, matrix: ArrayLike) -> ArrayLike:
    """Map (N, 7+) boxes through a 4×4 augmentation matrix exactly (see the module doc).

    A point inside a box before the map is inside the mapped box after it. Extra columns
    beyond 7 (e.g. velocity) are copied unchanged.
    """
    arr = _boxes(boxes)
    mat = _np(matrix).astype(np.float64).reshape(4, 4)
    _check_similarity(mat)
    lin, t = mat[:3, :3], mat[:3, 3]
    out = arr.copy()
    out[:, :3] = arr[:, :3] @ lin.T + t
    heading = np.stack([np.cos(arr[:, 6]), np.sin(arr[:, 6])], axis=1) @ lin[:2, :2].T
    xy_scale = float(np.sqrt(abs(np.linalg.det(lin[:2, :2]))))
    out[:, 3] = arr[:, 3] * xy_scale
    out[:, 4] = arr[:, 4] * xy_scale
    out[:, 5] = arr[:, 5] * lin[2, 2]
    out[:, 6] = limit_period(np.arctan2(heading[:, 1], heading[:, 0]))
    return _like(out, boxes)


def weak_to_strong_matrix(weak: ArrayLike, strong: ArrayLike) -> np.ndarray:
    """The 4×4 map from the weak view to the strong view of one scene: ``strong @ inv(weak)``
    (both record the map from the raw scene to their view)."""
    w = _np(weak).astype(np.float64).reshape(4, 4)
    s = _np(strong).astype(np.float64).reshape(4, 4)
    return s @ np.linalg.inv(w)


def match_boxes_bev(boxes: ArrayLike, labels: ArrayLike, gt_boxes: ArrayLike,
                    gt_labels: ArrayLike, iou_thr) -> tuple:
    """``(iou, finds)``, each (N, M) tensors: the BEV IoU of every box with every labeled
    box, and whether a box finds a labeled box: their classes agree and their IoU reaches
    ``iou_thr`` (a float, or one a class: a sequence indexed by the labeled box's class)."""
    from ssl_det.ops import rotated_iou_bev
    boxes = torch.as_tensor(boxes).double().reshape(-1, 7)
    device = boxes.device
    gt_boxes = torch.as_tensor(gt_boxes).double().reshape(-1, 7).to(device)
    labels = torch.as_tensor(labels).long().to(device)
    gt_labels = torch.as_tensor(gt_labels).long().to(device)
    if not len(boxes) or not len(gt_boxes):
        iou = boxes.new_zeros(len(boxes), len(gt_boxes))
        return iou, iou.bool()
    iou = rotated_iou_bev(boxes, gt_boxes)
    thr = torch.as_tensor(iou_thr, dtype=iou.dtype, device=device)
    if thr.ndim:
        thr = thr[gt_labels][None]
    return iou, (iou >= thr) & (labels[:, None] == gt_labels[None])
