"""Pure-torch references of every op in ssl_det.ops, written for reading, not for speed.

Tests compare the compiled kernels with these; the benchmark also times them as the
"vectorised torch" peer. Each function has the signature and contract of its compiled
twin (see ssl_det/ops/iou.py and jitter.py) and computes in the dtype it is given, so pass
float64 for a precise reference.
"""
import math
from typing import Optional

import torch

# --------------------------------------------------------------------------------------------
# Axis-aligned boxes
# --------------------------------------------------------------------------------------------


def bbox_overlaps(a: torch.Tensor, b: torch.Tensor, mode: str = 'iou', aligned: bool = False,
                  eps: float = 1e-6) -> torch.Tensor:
    """mmdet's ``bbox_overlaps`` (iou / iof / giou), for (N, 4) and (M, 4) xyxy boxes.

    Floors use ``clamp(min=eps)``, so gradients pass where the floored value is >= eps.
    """
    if not aligned:
        a, b = a[:, None, :], b[None, :, :]  # broadcast to (N, M, 4)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = area_a if mode == 'iof' else area_a + area_b - overlap
    union = union.clamp(min=eps)
    ious = overlap / union
    if mode != 'giou':
        return ious
    enclose_wh = (torch.maximum(a[..., 2:], b[..., 2:]) -
                  torch.minimum(a[..., :2], b[..., :2])).clamp(min=0)
    enclose = (enclose_wh[..., 0] * enclose_wh[..., 1]).clamp(min=eps)
    return ious - (enclose - union) / enclose


# --------------------------------------------------------------------------------------------
# Rotated boxes (BEV) and 3D boxes
# --------------------------------------------------------------------------------------------


def bev_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 5) ``(x, y, w, l, yaw)`` footprints of (N, 5) or (N, 7) boxes."""
    return boxes[:, [0, 1, 3, 4, 6]] if boxes.shape[-1] == 7 else boxes


def box_corners(bev: torch.Tensor) -> torch.Tensor:
    """(N, 4, 2) counter-clockwise corners of (N, 5) boxes ``(x, y, w, l, yaw)``:
    local corners (+-w/2, +-l/2) rotated by [[cos, -sin], [sin, cos]], plus the centre."""
    half_w, half_l = bev[:, 2:3] / 2, bev[:, 3:4] / 2
    local_x = torch.cat([-half_w, half_w, half_w, -half_w], dim=1)  # (N, 4)
    local_y = torch.cat([-half_l, -half_l, half_l, half_l], dim=1)
    cos, sin = torch.cos(bev[:, 4:5]), torch.sin(bev[:, 4:5])
    x = bev[:, 0:1] + cos * local_x - sin * local_y
    y = bev[:, 1:2] + sin * local_x + cos * local_y
    return torch.stack([x, y], dim=-1)


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _points_in_quads(points: torch.Tensor, quads: torch.Tensor, tol: torch.Tensor) -> torch.Tensor:
    """(P, K) mask of points (P, K, 2) inside convex CCW quads (P, 4, 2), or within ``tol``
    (P,) of them."""
    edges = quads.roll(-1, dims=1) - quads  # (P, 4, 2)
    rel = points[:, :, None, :] - quads[:, None, :, :]  # (P, K, 4, 2)
    # Signed distance of each point to each edge's line, positive inside.
    dist = _cross(edges[:, None], rel) / edges.norm(dim=-1)[:, None]
    return (dist >= -tol[:, None, None]).all(dim=-1)


def _edge_intersections(qa: torch.Tensor, qb: torch.Tensor):
    """Crossings of every edge of qa with every edge of qb, both (P, 4, 2).

    Returns points (P, 16, 2) and a validity mask (P, 16); parallel edges never cross here
    (their shared stretch, if any, is bounded by corners found inside the other box).
    """
    p, r = qa, qa.roll(-1, dims=1) - qa  # edge i of a: p_i + t r_i, t in [0, 1]
    q, s = qb, qb.roll(-1, dims=1) - qb  # edge j of b: q_j + u s_j, u in [0, 1]
    p, r = p[:, :, None], r[:, :, None]  # (P, 4, 1, 2)
    q, s = q[:, None], s[:, None]  # (P, 1, 4, 2)
    denom = _cross(r, s)  # (P, 4, 4)
    qp = q - p
    scale = r.norm(dim=-1) * s.norm(dim=-1)
    parallel = denom.abs() <= 1e-12 * scale
    safe = torch.where(parallel, torch.ones_like(denom), denom)
    t = _cross(qp, s) / safe
    u = _cross(qp, r) / safe
    tol = 1e-9
    valid = ~parallel & (t >= -tol) & (t <= 1 + tol) & (u >= -tol) & (u <= 1 + tol)
    points = p + t[..., None] * r
    return points.flatten(1, 2), valid.flatten(1, 2)


def _polygon_area(points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Area of the convex polygon whose vertices are the valid points (P, K, 2), any order:
    sort them by angle around their mean, then apply the shoelace formula."""
    count = valid.sum(dim=1)
    weights = valid.to(points.dtype)[..., None]
    centre = (points * weights).sum(dim=1) / count.clamp(min=1)[:, None].to(points.dtype)
    rel = points - centre[:, None]
    angle = torch.atan2(rel[..., 1], rel[..., 0])
    angle = torch.where(valid, angle, torch.full_like(angle, math.inf))  # invalid ones last
    order = angle.argsort(dim=1)
    rel = rel.gather(1, order[..., None].expand_as(rel))
    valid = valid.gather(1, order)
    # Invalid slots repeat the first vertex, which closes the polygon and adds no area.
    rel = torch.where(valid[..., None], rel, rel[:, :1].expand_as(rel))
    twice_area = _cross(rel, rel.roll(-1, dims=1)).sum(dim=1)
    area = (twice_area / 2).clamp(min=0)
    return torch.where(count >= 3, area, torch.zeros_like(area))


def rotated_intersection(a_bev: torch.Tensor, b_bev: torch.Tensor) -> torch.Tensor:
    """BEV intersection areas of aligned pairs of (P, 5) boxes ``(x, y, w, l, yaw)``.

    Candidate vertices of the intersection polygon: corners of each box inside the other and
    crossings of their edges; the polygon is their convex hull, taken by sorting by angle.
    Coordinates are made relative to a's centre first to keep precision at large offsets.
    """
    origin = a_bev[:, None, :2]
    qa = box_corners(a_bev) - origin
    qb = box_corners(b_bev) - origin
    size = torch.cat([a_bev[:, 2:4], b_bev[:, 2:4]], dim=1).abs().amax(dim=1)
    tol = 1e-9 * size  # points this close to an edge count as on it
    a_in_b = _points_in_quads(qa, qb, tol)
    b_in_a = _points_in_quads(qb, qa, tol)
    crossings, crossing_valid = _edge_intersections(qa, qb)
    points = torch.cat([qa, qb, crossings], dim=1)  # (P, 24, 2)
    valid = torch.cat([a_in_b, b_in_a, crossing_valid], dim=1)
    area = _polygon_area(points, valid)
    degenerate = (a_bev[:, 2] * a_bev[:, 3] <= 0) | (b_bev[:, 2] * b_bev[:, 3] <= 0)
    return torch.where(degenerate, torch.zeros_like(area), area)


def _aabb(bev: torch.Tensor) -> torch.Tensor:
    """(N, 4) axis-aligned bounds (xmin, ymin, xmax, ymax) of (N, 5) boxes."""
    cos, sin = torch.cos(bev[:, 4]).abs(), torch.sin(bev[:, 4]).abs()
    half_w, half_l = bev[:, 2] / 2, bev[:, 3] / 2
    ex, ey = cos * half_w + sin * half_l, sin * half_w + cos * half_l
    return torch.stack([bev[:, 0] - ex, bev[:, 1] - ey, bev[:, 0] + ex, bev[:, 1] + ey], dim=1)


def _rotated_iou(a: torch.Tensor, b: torch.Tensor, aligned: bool, eps: float,
                 with_height: bool, chunk: int = 1 << 16) -> torch.Tensor:
    a_bev, b_bev = bev_boxes(a), bev_boxes(b)
    if aligned:
        rows = cols = torch.arange(a.shape[0], device=a.device)
    else:
        # Only pairs whose bounds overlap can intersect; the others keep IoU 0.
        box_a, box_b = _aabb(a_bev), _aabb(b_bev)
        lt = torch.maximum(box_a[:, None, :2], box_b[None, :, :2])
        rb = torch.minimum(box_a[:, None, 2:], box_b[None, :, 2:])
        rows, cols = ((rb - lt) > 0).all(dim=-1).nonzero(as_tuple=True)
    ious = a.new_zeros(rows.shape[0])
    for start in range(0, rows.shape[0], chunk):  # bounded memory on big inputs
        i, j = rows[start:start + chunk], cols[start:start + chunk]
        inter = rotated_intersection(a_bev[i], b_bev[j])
        if with_height:
            top = torch.minimum(a[i, 2] + a[i, 5] / 2, b[j, 2] + b[j, 5] / 2)
            bottom = torch.maximum(a[i, 2] - a[i, 5] / 2, b[j, 2] - b[j, 5] / 2)
            inter = inter * (top - bottom).clamp(min=0)
            volume_a = a_bev[i, 2] * a_bev[i, 3] * a[i, 5]
            volume_b = b_bev[j, 2] * b_bev[j, 3] * b[j, 5]
            union = volume_a + volume_b - inter
        else:
            union = a_bev[i, 2] * a_bev[i, 3] + b_bev[j, 2] * b_bev[j, 3] - inter
        ious[start:start + chunk] = inter / union.clamp(min=eps)
    if aligned:
        return ious
    out = a.new_zeros(a.shape[0], b.shape[0])
    out[rows, cols] = ious
    return out


def rotated_iou_bev(a: torch.Tensor, b: torch.Tensor, aligned: bool = False,
                    eps: float = 1e-6) -> torch.Tensor:
    """BEV IoU of (N, 5|7) and (M, 5|7) rotated boxes; see ssl_det.ops.rotated_iou_bev."""
    return _rotated_iou(a, b, aligned, eps, with_height=False)


def iou_3d(a: torch.Tensor, b: torch.Tensor, aligned: bool = False,
           eps: float = 1e-6) -> torch.Tensor:
    """3D IoU of (N, 7) and (M, 7) boxes ``(x, y, z, dx, dy, dz, yaw)``; z is the centre."""
    return _rotated_iou(a, b, aligned, eps, with_height=True)


# --------------------------------------------------------------------------------------------
# Soft Teacher box jitter
# --------------------------------------------------------------------------------------------


def box_jitter_with_noise(boxes: torch.Tensor, noise: torch.Tensor, scale: float) -> torch.Tensor:
    """mmdet's ``SoftTeacher.aug_box`` maths on (N, K) boxes with noise (times, N, 4), output
    box-major (N * times, K) with columns after the fourth copied. Computed in float64 for
    float64 boxes, else in float32 (as the kernels)."""
    times, n = noise.shape[0], boxes.shape[0]
    compute = torch.float64 if boxes.dtype == torch.float64 else torch.float32
    box = boxes.to(compute)
    wh = (box[:, 2:4] - box[:, :2]).clamp(min=1)
    step = wh.repeat(1, 2) * scale  # (N, 4): w, h, w, h
    jittered = box[None, :, :4] + noise.to(compute) * step[None]  # (times, N, 4): mmdet's layout
    out = box[None].repeat(times, 1, 1)
    out[..., :4] = jittered
    return out.transpose(0, 1).reshape(n * times, boxes.shape[1]).to(boxes.dtype)


def box_jitter(boxes: torch.Tensor, times: int, scale: float,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Same random draw as ssl_det.ops.box_jitter (float32 standard normals, (times, N, 4))."""
    noise = torch.randn((times, boxes.shape[0], 4), generator=generator, device=boxes.device,
                        dtype=torch.float32)
    return box_jitter_with_noise(boxes, noise, scale)


def jitter_uncertainty(refined: torch.Tensor, labels: Optional[torch.Tensor],
                       times: int) -> torch.Tensor:
    """mmdet's ``compute_uncertainty_with_aug`` after the RoI head, for box-major input."""
    per_box = refined.reshape(-1, times, refined.shape[-1])  # (N, times, 4C)
    n, channels = per_box.shape[0], per_box.shape[-1] // 4
    std = per_box.std(dim=1)  # unbiased, torch's default, as mmdet
    mean = per_box.mean(dim=1)
    if channels > 1:
        pick = torch.arange(n, device=refined.device)
        std = std.reshape(n, channels, 4)[pick, labels]
        mean = mean.reshape(n, channels, 4)[pick, labels]
    wh = (mean[:, 2:4] - mean[:, :2]).clamp(min=1.0)
    return (std / wh.repeat(1, 2)).mean(dim=-1)
