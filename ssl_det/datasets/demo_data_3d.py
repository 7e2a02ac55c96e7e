"""A deterministic synthetic LiDAR data set for demos and tests: ray-cast street scenes.

A sensor at the origin (x forward, y left, z up) scans the front half-plane on a grid of
azimuths and of elevation beams (denser near the horizon, as on a real 64-beam sensor). Each
ray is intersected with a flat ground at ``z = -1.7`` and with every primitive (yaw-rotated
boxes, vertical cylinders, ellipsoids) of the scene's objects and clutter; the nearest hit is
kept, so density falls with range, only sensor-facing surfaces return points and objects
hide each other. Hits get range noise, random drop-out (more for dark, far surfaces) and an
intensity from the surface's reflectance and incidence angle.

Objects: ``Car`` (body, cabin, wheels), ``Pedestrian`` (legs, torso, head), ``Cyclist``
(wheels, frame, rider). Clutter that is never labeled: walls, poles and bollards (of a
pedestrian's size), trees, bushes and plain boxes (of a car's size). A label is the object's
full box in ssl_det's convention (z = centre) whatever is visible, with ``num_lidar_pts``
(points inside it), ``occlusion`` (fraction of the object's would-be returns hidden by other
things) and a KITTI-like ``difficulty``; boxes with no point are dropped and counted.
The same seed gives the same bytes; frame ``i`` of a split does not depend on the count.
"""
import json
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.logging import print_log

from ..structures.box3d import points_in_boxes
from .point_cloud_io import INFO_CONVENTION, dump_info_file, save_points
from .point_cloud_split import split_point_cloud

CLASSES: Tuple[str, ...] = ('Car', 'Pedestrian', 'Cyclist')
POINT_CLOUD_RANGE: Tuple[float, ...] = (0.0, -32.0, -3.0, 64.0, 32.0, 1.0)
GROUND_Z = -1.7
# Mean (dx along the heading, dy, dz) in metres; each object is jittered by ±10%.
CLASS_SIZES = {'Car': (3.9, 1.6, 1.5), 'Pedestrian': (0.8, 0.6, 1.75),
               'Cyclist': (1.8, 0.6, 1.7)}
CLASS_PROBS = (0.55, 0.25, 0.2)
BOX, CYLINDER, ELLIPSOID = 0, 1, 2
# A primitive row: kind, centre xyz, half sizes (box: half extents; cylinder: r, r, half
# height; ellipsoid: radii), yaw, reflectance, range noise sigma (m), owner (object or -1).
_PRIM_COLS = 11
_INSET = 0.04  # parts stay this far inside the label box, so range noise rarely leaves it


def beam_elevations(num_beams: int = 40, low_deg: float = -24.0,
                    high_deg: float = 3.0) -> np.ndarray:
    """Ascending beam elevations (radians): 2/3 of the beams in the upper third of the fan."""
    split = high_deg - (high_deg - low_deg) / 3
    n_up = int(round(num_beams * 2 / 3))
    lower = np.linspace(low_deg, split, num_beams - n_up, endpoint=False)
    return np.deg2rad(np.concatenate([lower, np.linspace(split, high_deg, n_up)]))


def _to_local(vec: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Rotate world vectors (K, 3) by -yaw about z (into each primitive's frame)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * vec[:, 0] + s * vec[:, 1], -s * vec[:, 0] + c * vec[:, 1], vec[:, 2]], 1)


def _to_world(vec: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * vec[:, 0] - s * vec[:, 1], s * vec[:, 0] + c * vec[:, 1], vec[:, 2]], 1)


def _intersect(kind: int, d: np.ndarray, prim: np.ndarray):
    """Entry distance (K,) (inf: miss) and world normal (K, 3) of rays from the origin with
    direction ``d`` (K, 3) against one primitive per row of ``prim`` (K, cols), all of ``kind``."""
    centre, half, yaw = prim[:, 1:4], prim[:, 4:7], prim[:, 7]
    if kind == CYLINDER:
        r, c2, d2 = half[:, 0], centre[:, :2], d[:, :2]
        a = np.maximum((d2 ** 2).sum(1), 1e-12)
        b = (d2 * c2).sum(1)
        disc = b * b - a * ((c2 ** 2).sum(1) - r * r)
        t_side = (b - np.sqrt(np.maximum(disc, 0))) / a
        z0, z1 = centre[:, 2] - half[:, 2], centre[:, 2] + half[:, 2]
        z_side = t_side * d[:, 2]
        t_side = np.where((disc >= 0) & (t_side > 0) & (z_side >= z0) & (z_side <= z1),
                          t_side, np.inf)
        # The top is seen only from above (the sensor is never below a cylinder's bottom).
        t_top = np.where((z1 < 0) & (d[:, 2] < 0), z1 / np.minimum(d[:, 2], -1e-12), np.inf)
        on_top = ((t_top[:, None] * d2 - c2) ** 2).sum(1) <= r * r
        t_top = np.where(on_top, t_top, np.inf)
        t = np.minimum(t_side, t_top)
        radial = np.concatenate([(t_side[:, None] * d2 - c2) / r[:, None],
                                 np.zeros((len(d), 1))], 1)
        normal = np.where((t_top < t_side)[:, None], np.array([0.0, 0.0, 1.0]), radial)
        return t, np.nan_to_num(normal)
    origin = _to_local(-centre, yaw)
    dl = _to_local(d, yaw)
    if kind == BOX:
        dl = np.where(np.abs(dl) < 1e-12, 1e-12, dl)
        t1, t2 = (-half - origin) / dl, (half - origin) / dl
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        t_in, t_out = near.max(1), far.min(1)
        t = np.where((t_in <= t_out) & (t_in > 0), t_in, np.inf)
        axis = near.argmax(1)
        normal = np.zeros_like(dl)
        normal[np.arange(len(d)), axis] = -np.sign(dl[np.arange(len(d)), axis])
        return t, _to_world(normal, yaw)
    o, dd = origin / half, dl / half  # ellipsoid -> unit sphere
    a = (dd ** 2).sum(1)
    b = (o * dd).sum(1)
    disc = b * b - a * ((o ** 2).sum(1) - 1)
    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    t = np.where((disc >= 0) & (t > 0), t, np.inf)
    normal = _to_world((o + np.where(np.isfinite(t), t, 0)[:, None] * dd) / half ** 2, yaw)
    return t, normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)


def _ray_windows(prims: np.ndarray, azimuths: np.ndarray, elevations: np.ndarray):
    """Conservative azimuth/beam index windows of each primitive (its bounding cylinder)."""
    cx, cy, cz, hx, hy, hz = prims[:, 1:7].T
    radius = np.hypot(hx, hy) + 0.05
    dist = np.hypot(cx, cy)
    centre_az = np.arctan2(cy, cx)
    half = np.where(dist > radius, np.arcsin(np.minimum(radius / np.maximum(dist, 1e-9), 1)),
                    np.pi)
    step = azimuths[1] - azimuths[0]
    a0 = np.clip(np.floor((centre_az - half - azimuths[0]) / step) - 1, 0, len(azimuths))
    a1 = np.clip(np.ceil((centre_az + half - azimuths[0]) / step) + 1, -1, len(azimuths) - 1)
    dmin, dmax = np.maximum(dist - radius, 0.05), dist + radius
    z0, z1 = cz - hz, cz + hz
    el_lo = np.arctan2(z0, np.where(z0 < 0, dmin, dmax))
    el_hi = np.arctan2(z1, np.where(z1 > 0, dmin, dmax))
    b0 = np.searchsorted(elevations, el_lo - 1e-9, 'left')
    b1 = np.searchsorted(elevations, el_hi + 1e-9, 'right') - 1
    return a0.astype(np.int64), a1.astype(np.int64), b0, b1


def cast_rays(prims: np.ndarray, azimuths: np.ndarray, elevations: np.ndarray) -> Dict:
    """Nearest hit of every ray (index ``a * len(elevations) + b``) with ground and primitives.

    Rays start at the origin; only (ray, primitive) pairs inside each primitive's angular
    window are intersected. Returns, over the rays that hit: ``ray``, ``dirs`` (K, 3),
    ``t`` (m), ``normal`` (K, 3), ``prim`` (row of ``prims``, -1 for the ground); and
    ``alone``: ``{owner: number of rays that would hit it if nothing but the ground were
    there}``, to measure occlusion.
    """
    num_b = len(elevations)
    ce, se = np.cos(elevations), np.sin(elevations)
    dirs = np.stack([np.cos(azimuths)[:, None] * ce, np.sin(azimuths)[:, None] * ce,
                     np.broadcast_to(se, (len(azimuths), num_b))], -1).reshape(-1, 3)
    t_best = np.where(dirs[:, 2] < -1e-6, GROUND_Z / np.minimum(dirs[:, 2], -1e-6), np.inf)
    t_ground = t_best.copy()
    pair_ray, pair_prim, pair_t, pair_n = [], [], [], []
    if len(prims):
        a0, a1, b0, b1 = _ray_windows(prims, azimuths, elevations)
        na, nb = np.maximum(a1 - a0 + 1, 0), np.maximum(b1 - b0 + 1, 0)
        count = na * nb
        prim_idx = np.repeat(np.arange(len(prims)), count)
        k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        nb_rep = np.maximum(nb[prim_idx], 1)
        ray = (a0[prim_idx] + k // nb_rep) * num_b + b0[prim_idx] + k % nb_rep
        for kind in (BOX, CYLINDER, ELLIPSOID):
            sel = prims[prim_idx, 0] == kind
            t, normal = _intersect(kind, dirs[ray[sel]], prims[prim_idx[sel]])
            hit = np.isfinite(t)
            pair_ray.append(ray[sel][hit])
            pair_prim.append(prim_idx[sel][hit])
            pair_t.append(t[hit])
            pair_n.append(normal[hit])
    ray = np.concatenate(pair_ray) if pair_ray else np.zeros(0, np.int64)
    prim = np.concatenate(pair_prim) if pair_prim else np.zeros(0, np.int64)
    t_pair = np.concatenate(pair_t) if pair_t else np.zeros(0)
    n_pair = np.concatenate(pair_n) if pair_n else np.zeros((0, 3))
    np.minimum.at(t_best, ray, t_pair)
    # Would-be returns per owner: its nearest part is in front of the ground on that ray.
    owner = prims[prim, 10].astype(np.int64) if len(prim) else prim
    free = (owner >= 0) & (t_pair < t_ground[ray])
    owner_ray = np.unique(owner[free] * len(dirs) + ray[free])
    alone = dict(zip(*np.unique(owner_ray // len(dirs), return_counts=True)))
    win = np.flatnonzero(t_pair == t_best[ray])
    win = win[np.unique(ray[win], return_index=True)[1]]
    hit_rays = np.flatnonzero(np.isfinite(t_best))
    out_prim = np.full(len(dirs), -1, np.int64)
    out_prim[ray[win]] = prim[win]
    normals = np.tile([0.0, 0.0, 1.0], (len(dirs), 1))
    normals[ray[win]] = n_pair[win]
    return dict(ray=hit_rays, dirs=dirs[hit_rays], t=t_best[hit_rays],
                normal=normals[hit_rays], prim=out_prim[hit_rays], alone=alone)


# ----------------------------------------------------------------------------- scene layout
def _rect_corners(rects: np.ndarray) -> np.ndarray:
    """(K, 4, 2) corners of BEV rectangles (cx, cy, length along yaw, width, yaw)."""
    c, s = np.cos(rects[:, 4:5]), np.sin(rects[:, 4:5])
    lx = rects[:, 2:3] * np.array([0.5, -0.5, -0.5, 0.5])
    ly = rects[:, 3:4] * np.array([0.5, 0.5, -0.5, -0.5])
    return np.stack([rects[:, :1] + lx * c - ly * s, rects[:, 1:2] + lx * s + ly * c], -1)


def _overlaps(rect: np.ndarray, placed: List[np.ndarray], gap: float) -> bool:
    """Whether ``rect`` comes within ``gap`` of any placed rectangle (separating axes)."""
    if not placed:
        return False
    others = np.array(placed)
    a, b = _rect_corners(rect[None]), _rect_corners(others)
    yaws = np.concatenate([np.full((len(others), 1), rect[4]), others[:, 4:5]], 1)
    yaws = np.concatenate([yaws, yaws + np.pi / 2], 1)
    axes = np.stack([np.cos(yaws), np.sin(yaws)], -1)  # (K, 4, 2)
    pa = np.einsum('ac,kjc->kja', a[0], axes)
    pb = np.einsum('kac,kjc->kja', b, axes)
    apart = (pa.min(-1) > pb.max(-1) + gap) | (pb.min(-1) > pa.max(-1) + gap)
    return bool((~apart.any(1)).any())


def _in_range(rect: np.ndarray, min_x: float) -> bool:
    xy = _rect_corners(rect[None])[0]
    return bool((xy[:, 0] >= min_x).all() and (xy[:, 0] <= POINT_CLOUD_RANGE[3] - 0.2).all()
                and (np.abs(xy[:, 1]) <= POINT_CLOUD_RANGE[4] - 0.2).all())


def _part(kind, centre, half, yaw=0.0, refl=0.5, sigma=0.02) -> List[float]:
    return [kind, *centre, *half, yaw, refl, sigma, -1]


def _object_parts(label: int, dims: np.ndarray, rng: np.random.Generator) -> List[List[float]]:
    """Primitives of one object in its box frame (origin at the box centre, x = heading)."""
    length, width, height = dims
    hl, hw = length / 2 - _INSET, width / 2 - _INSET
    bottom, top = -height / 2, height / 2 - _INSET
    if label == 0:  # car: body, cabin (glass: dark), four wheels
        paint = rng.uniform(0.05, 0.9)
        body_top = bottom + height * rng.uniform(0.5, 0.6)
        cab_len = hl * rng.uniform(0.45, 0.8)
        wheel = 0.3 * height / 1.5
        parts = [_part(BOX, (0, 0, (bottom + 0.22 + body_top) / 2),
                       (hl, hw, (body_top - bottom - 0.22) / 2), refl=paint),
                 _part(BOX, (rng.uniform(-0.25, 0.05) * hl, 0, (body_top + top) / 2),
                       (cab_len, hw - 0.08, (top - body_top) / 2), refl=0.5 * paint + 0.05)]
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(_part(ELLIPSOID, (sx * (hl - wheel - 0.2), sy * (hw - 0.1),
                                               bottom + wheel), (wheel, 0.1, wheel), refl=0.05))
        return parts
    cloth = rng.uniform(0.1, 0.7)
    scale = height / CLASS_SIZES[CLASSES[label]][2]
    head = 0.11 * scale
    if label == 1:  # pedestrian: two legs (a stride along the heading), torso, head
        stride = rng.uniform(0.0, hl - 0.09)
        leg_h = 0.47 * height
        parts = [_part(CYLINDER, (sx * stride * rng.uniform(0.5, 1), sy * 0.1,
                                  bottom + leg_h / 2), (0.08, 0.08, leg_h / 2), refl=cloth)
                 for sx, sy in ((1, 1), (-1, -1))]
        torso_top = top - 2 * head
        parts += [_part(BOX, (0, 0, (bottom + leg_h + torso_top) / 2),
                        (0.12, min(0.22, hw), (torso_top - bottom - leg_h) / 2), refl=cloth),
                  _part(ELLIPSOID, (0, 0, top - head), (head, head, head), refl=0.3)]
        return parts
    # cyclist: wheels (thin discs in the heading plane), frame, rider's legs, torso, head
    wheel = min(0.34 * scale, hl / 2)
    parts = [_part(ELLIPSOID, (sx * (hl - wheel), 0, bottom + wheel), (wheel, 0.03, wheel),
                   refl=0.05) for sx in (-1, 1)]
    parts += [_part(BOX, (0, 0, bottom + 0.55 * scale), (hl - wheel, 0.03, 0.12 * scale),
                    refl=rng.uniform(0.3, 0.9)),
              _part(CYLINDER, (-0.1 * hl, 0, bottom + 0.75 * scale), (0.12, 0.12, 0.3 * scale),
                    refl=cloth),
              _part(BOX, (-0.1 * hl, 0, top - 2 * head - 0.27 * scale),
                    (0.15, min(0.2, hw), 0.27 * scale), refl=cloth),
              _part(ELLIPSOID, (0, 0, top - head), (head, head, head), refl=0.3)]
    return parts


def object_primitives(label: int, box: np.ndarray, rng: np.random.Generator,
                      owner: int = 0) -> np.ndarray:
    """World primitive rows of an object of class index ``label`` filling ``box`` (7,)."""
    return _place_parts(_object_parts(label, box[3:6], rng), box, owner)


def _place_parts(parts: List[List[float]], box: np.ndarray, owner: int) -> np.ndarray:
    """Parts in a box's frame -> world primitive rows owned by ``owner``."""
    rows = np.array(parts, np.float64)
    rows[:, 1:4] = _to_world(rows[:, 1:4], np.full(len(rows), box[6])) + box[:3]
    rows[:, 7] += box[6]
    rows[:, 10] = owner
    return rows


def _sample_object(label: int, rng: np.random.Generator, road_y: float,
                   road_half: float) -> np.ndarray:
    """A box (x, y, z, dx, dy, dz, yaw) on the ground: on the road/sidewalk or anywhere."""
    dims = np.array(CLASS_SIZES[CLASSES[label]]) * rng.uniform(0.9, 1.1, 3)
    if rng.random() < (0.7, 0.5, 0.6)[label]:
        x = rng.uniform(4, 62)
        if label == 1:  # pedestrians on a sidewalk
            y = road_y + rng.choice([-1, 1]) * rng.uniform(road_half, road_half + 4)
            yaw = rng.uniform(-np.pi, np.pi)
        else:  # vehicles in a lane, along the road
            y = road_y + rng.uniform(-road_half + 1, road_half - 1)
            yaw = rng.choice([0.0, np.pi]) + rng.normal(0, 0.1)
    else:
        r, phi = rng.uniform(4, 60), rng.uniform(-1.3, 1.3)
        x, y, yaw = r * np.cos(phi), r * np.sin(phi), rng.uniform(-np.pi, np.pi)
    yaw = float(np.arctan2(np.sin(yaw), np.cos(yaw)))
    return np.array([x, y, GROUND_Z + dims[2] / 2, *dims, yaw])


def _sample_clutter(kind: str, rng: np.random.Generator, road_y: float, road_half: float):
    """(BEV footprint rect, parts in the footprint's frame) of one unlabeled thing."""
    x, y, yaw = rng.uniform(3, 63), rng.uniform(-31, 31), rng.uniform(-np.pi, np.pi)
    if kind == 'wall':  # along the road beyond the sidewalk, or across it far away
        length, thick, height = rng.uniform(5, 25), rng.uniform(0.2, 0.5), rng.uniform(1, 3.5)
        if rng.random() < 0.75:
            y = road_y + rng.choice([-1, 1]) * (road_half + rng.uniform(5, 18))
            yaw = rng.normal(0, 0.05)
        else:
            x, yaw = rng.uniform(40, 62), np.pi / 2 + rng.normal(0, 0.05)
        dims = (length, thick, height)
        parts = [_part(BOX, (0, 0, 0), np.array(dims) / 2, refl=rng.uniform(0.15, 0.5))]
    elif kind == 'pole':  # street lights, or bollards/posts of a pedestrian's size
        tall = rng.random() < 0.5
        r = rng.uniform(0.05, 0.12) if tall else rng.uniform(0.15, 0.3)
        height = rng.uniform(3, 7) if tall else rng.uniform(0.8, 2.0)
        dims = (2 * r, 2 * r, height)
        parts = [_part(CYLINDER, (0, 0, 0), (r, r, height / 2), refl=rng.uniform(0.3, 0.9))]
    elif kind == 'tree':
        trunk_r, trunk_h = rng.uniform(0.1, 0.25), rng.uniform(1.5, 3.5)
        crown = np.array([rng.uniform(1, 2.2), rng.uniform(1, 2.2), rng.uniform(1, 2)])
        height = trunk_h + 1.6 * crown[2]
        dims = (2 * crown[0], 2 * crown[1], height)
        parts = [_part(CYLINDER, (0, 0, trunk_h / 2 - height / 2),
                       (trunk_r, trunk_r, trunk_h / 2), refl=0.3),
                 _part(ELLIPSOID, (0, 0, height / 2 - crown[2]), crown, refl=0.45, sigma=0.1)]
    elif kind == 'bush':  # a few overlapping blobs
        dims = (rng.uniform(1, 3), rng.uniform(0.8, 2), rng.uniform(0.4, 1.3))
        parts = []
        for _ in range(int(rng.integers(1, 4))):
            radii = np.array(dims) / 2 * rng.uniform(0.5, 1.0, 3)
            centre = (np.array(dims) / 2 - radii) * rng.uniform(-1, 1, 3)
            centre[2] = radii[2] - dims[2] / 2
            parts.append(_part(ELLIPSOID, centre, radii, refl=rng.uniform(0.3, 0.6),
                               sigma=0.06))
    else:  # 'box': containers, kiosks, benches; some of a car's size, none with a cabin
        narrow = rng.random() < 0.3
        dims = (rng.uniform(1.5, 5), rng.uniform(0.3, 0.6) if narrow else rng.uniform(1, 2.2),
                rng.uniform(0.5, 2.3))
        parts = [_part(BOX, (0, 0, 0), np.array(dims) / 2, refl=rng.uniform(0.2, 0.7))]
    box = np.array([x, y, GROUND_Z + dims[2] / 2, *dims, yaw])
    return box, parts


CLUTTER_COUNTS = dict(wall=(0, 3), pole=(2, 8), tree=(0, 4), bush=(1, 5), box=(0, 3))


def layout_scene(rng: np.random.Generator, min_objects: int = 3, max_objects: int = 15,
                 clutter_scale: float = 1.0) -> Dict:
    """Place objects and clutter without overlap (0.3 m apart in BEV) on a street.

    Returns ``dict(boxes (M, 7), labels (M,), prims (P, 11), road_y, road_half)``.
    """
    road_y, road_half = rng.uniform(-4, 4), rng.uniform(4, 7)
    placed: List[np.ndarray] = []  # BEV footprints (cx, cy, length, width, yaw)
    boxes, labels, prims = [], [], []
    for _ in range(int(rng.integers(min_objects, max_objects + 1))):
        label = int(rng.choice(len(CLASSES), p=CLASS_PROBS))
        for _attempt in range(20):
            box = _sample_object(label, rng, road_y, road_half)
            rect = box[[0, 1, 3, 4, 6]]
            if _in_range(rect, 2.0) and not _overlaps(rect, placed, 0.3):
                placed.append(rect)
                prims.append(object_primitives(label, box, rng, owner=len(boxes)))
                boxes.append(box)
                labels.append(label)
                break
    for kind, (low, high) in CLUTTER_COUNTS.items():
        for _ in range(int(round(rng.integers(low, high + 1) * clutter_scale))):
            for _attempt in range(20):
                box, parts = _sample_clutter(kind, rng, road_y, road_half)
                rect = box[[0, 1, 3, 4, 6]]
                if (_rect_corners(rect[None])[0, :, 0].min() > 1.5
                        and not _overlaps(rect, placed, 0.3)):
                    placed.append(rect)
                    prims.append(_place_parts(parts, box, -1))
                    break
    return dict(boxes=np.array(boxes).reshape(-1, 7), labels=np.array(labels, np.int64),
                prims=np.concatenate(prims) if prims else np.zeros((0, _PRIM_COLS)),
                road_y=road_y, road_half=road_half)


def scan_scene(scene: Dict, rng: np.random.Generator, azimuth_step_deg: float = 0.3,
               num_beams: int = 40) -> Tuple[np.ndarray, List[Dict], int]:
    """Scan a laid-out scene (see :func:`layout_scene`) and label its objects.

    Returns:
        points (N, 4) float32 (x, y, z, intensity in [0, 1]) inside
        :data:`POINT_CLOUD_RANGE`; instances (info-file dicts of the boxes with >= 1 point);
        the number of objects dropped because no point fell in their box.
    """
    prims, road_y = scene['prims'], scene['road_y']
    step = np.deg2rad(azimuth_step_deg)
    azimuths = np.arange(-np.pi / 2, np.pi / 2, step) + rng.uniform(0, step)
    hits = cast_rays(prims, azimuths, beam_elevations(num_beams))
    ground = hits['prim'] < 0
    row = prims[np.maximum(hits['prim'], 0)] if len(prims) else np.zeros((len(ground), 11))
    owner = np.where(ground, -2, row[:, 10]).astype(np.int64)
    # Ground: dark asphalt on the road, brighter verges, a little height noise.
    on_road = np.abs(hits['t'] * hits['dirs'][:, 1] - road_y) < scene['road_half']
    refl = np.where(ground, np.where(on_road, 0.1, 0.3), row[:, 8])
    sigma = np.where(ground, 0.02, row[:, 9])
    t_hit = hits['t']
    t = t_hit + rng.normal(0, 1, len(t_hit)) * sigma
    xyz = t[:, None] * hits['dirs']
    xyz[:, 2] += np.where(ground, rng.normal(0, 0.015, len(t_hit)), 0.0)
    cos_inc = np.abs((hits['normal'] * hits['dirs']).sum(1))
    intensity = np.clip(refl * (0.35 + 0.65 * cos_inc) + rng.normal(0, 0.03, len(t_hit)), 0, 1)
    # Drop-out: a few random misses, more for dark surfaces far away.
    p_drop = 0.03 + 0.3 * (1 - refl) * (t_hit / 64.0) ** 2
    low, high = np.array(POINT_CLOUD_RANGE[:3]), np.array(POINT_CLOUD_RANGE[3:])
    keep = (rng.random(len(t_hit)) >= p_drop) & ((xyz >= low) & (xyz <= high)).all(1)
    points = np.concatenate([xyz, intensity[:, None]], 1)[keep].astype(np.float32)
    if not len(scene['boxes']):
        return points, [], 0
    # Boxes as written (4 decimals) and points as written (float32) give num_lidar_pts.
    boxes = np.round(scene['boxes'], 4)
    counts = points_in_boxes(points, boxes).sum(0)
    visible = np.bincount(owner[owner >= 0], minlength=len(boxes))
    instances = []
    for i, (box, label) in enumerate(zip(boxes, scene['labels'])):
        if counts[i] == 0:
            continue
        occlusion = 1 - min(visible[i] / max(hits['alone'].get(i, 0), 1), 1.0)
        level = 0 if counts[i] >= 50 else 1 if counts[i] >= 15 else 2
        instances.append(dict(bbox_3d=[float(v) for v in box], label_name=CLASSES[label],
                              difficulty=min(level + int(occlusion > 0.5), 2),
                              num_lidar_pts=int(counts[i]), occlusion=round(float(occlusion), 3)))
    return points, instances, int((counts == 0).sum())


def render_scene(rng: np.random.Generator, azimuth_step_deg: float = 0.3, num_beams: int = 40,
                 min_objects: int = 3, max_objects: int = 15,
                 clutter_scale: float = 1.0) -> Tuple[np.ndarray, List[Dict], int]:
    """:func:`layout_scene` then :func:`scan_scene` with one generator."""
    scene = layout_scene(rng, min_objects, max_objects, clutter_scale)
    return scan_scene(scene, rng, azimuth_step_deg, num_beams)


def make_split_3d(out_dir: str, split: str, num_frames: int, seed: int, split_index: int,
                  first_frame: int = 0, **scene_kwargs) -> Tuple[str, Dict]:
    """Write ``points/{frame}.bin`` and ``{split}.json``; frame ``i`` is drawn from the
    generator seeded by ``(seed, split_index, i)``. Returns the info file and a summary."""
    frames = []
    stats = dict(frames=num_frames, points=0, dropped_empty=0,
                 per_class={c: [] for c in CLASSES})
    for i in range(num_frames):
        rng = np.random.default_rng([seed, split_index, i])
        points, instances, dropped = render_scene(rng, **scene_kwargs)
        frame_id = f'{first_frame + i:06d}'
        lidar_path = f'points/{frame_id}.bin'
        save_points(osp.join(out_dir, lidar_path), points)
        frames.append(dict(frame_id=frame_id, lidar_path=lidar_path, num_point_features=4,
                           instances=instances))
        stats['points'] += len(points)
        stats['dropped_empty'] += dropped
        for inst in instances:
            stats['per_class'][inst['label_name']].append(inst['num_lidar_pts'])
    metainfo = dict(classes=list(CLASSES), point_dim=4, box_convention=INFO_CONVENTION,
                    point_cloud_range=list(POINT_CLOUD_RANGE), dataset='ssl_det_demo3d',
                    seed=seed, split=split)
    info_file = osp.join(out_dir, f'{split}.json')
    dump_info_file(dict(metainfo=metainfo, data_list=frames), info_file)
    return info_file, stats


def _summary(split: str, stats: Dict) -> str:
    lines = [f'{split}: {stats["frames"]} frames, {stats["points"] / max(stats["frames"], 1):.0f}'
             f' points/frame, {stats["dropped_empty"]} placed objects without points dropped']
    for name, pts in stats['per_class'].items():
        pts = np.array(pts or [0])
        lines.append(f'  {name:<10} {len(stats["per_class"][name]):5d} boxes, points/box '
                     f'median {np.median(pts):.0f} (p10 {np.percentile(pts, 10):.0f}, '
                     f'p90 {np.percentile(pts, 90):.0f}), < 15 pts: {(pts < 15).mean():.0%}')
    return '\n'.join(lines)


def make_demo_data_3d(out_dir: str, num_train: int = 600, num_val: int = 120, seed: int = 0,
                      labeled_percent: Optional[float] = 10, split_seed: int = 1,
                      splits: Sequence[str] = ('train', 'val'), verbose: bool = True,
                      **scene_kwargs) -> Dict[str, str]:
    """Write the 3D demo data set; returns ``{name: info file}``.

    Writes ``points/*.bin``, ``train.json``, ``val.json`` (frame ids disjoint) and, when
    ``labeled_percent`` is set, the semi-supervised split of ``train.json`` as the 2D demo
    names it: ``semi_anns/train.1@{pct}.json`` (``'labeled'``) and
    ``semi_anns/train.1@{pct}-unlabeled.json`` (``'unlabeled'``), fold 1, seed
    ``split_seed``. Their ``lidar_path`` values are relative to ``semi_anns/`` (like every
    ssl_det info file's: relative to the file's own folder). ``scene_kwargs`` go to
    :func:`render_scene` (``azimuth_step_deg``, ``num_beams``, ``min_objects``,
    ``max_objects``, ``clutter_scale``).
    """
    counts = dict(train=num_train, val=num_val)
    files, first, start = {}, 0, time.time()
    for index, split in enumerate(splits):
        files[split], stats = make_split_3d(out_dir, split, counts[split], seed, index, first,
                                            **scene_kwargs)
        first += counts[split]
        if verbose:
            print_log(_summary(split, stats), logger='current')
    if labeled_percent is not None and 'train' in files:
        (files['labeled'], files['unlabeled']), = split_point_cloud(
            files['train'], [labeled_percent], folds=1, out_dir=osp.join(out_dir, 'semi_anns'),
            seed=split_seed)
    if verbose:
        print_log(f'3D demo data written to {out_dir} in {time.time() - start:.1f} s',
                  logger='current')
    return files


def ensure_demo_data_3d(data_root: str) -> None:
    """Write the 3D demo data set (with its 10% split) into ``data_root`` unless it is there:
    the demo configs' ``data/demo3d``, used by ``tools/demo.py --task 3d`` and the 3D
    benchmarks."""
    if not (osp.isfile(osp.join(data_root, 'val.json'))
            and osp.isfile(osp.join(data_root, 'semi_anns', 'train.1@10-unlabeled.json'))):
        print_log(f'[demo3d] generating the 3D demo scenes in {data_root}', logger='current')
        make_demo_data_3d(data_root)


#: The held-out test split of the 3D demo: its own folder under the data root, frames drawn
#: from generator stream 2 (train is 0, val 1), so no frame of it is a train or val frame.
DEMO_TEST_DIR = 'test'
DEMO_TEST_FRAMES = 600


def ensure_demo_test_3d(data_root: str, num_frames: int = DEMO_TEST_FRAMES) -> str:
    """Write the 3D demo's held-out test scenes into ``{data_root}/test`` unless they are
    there with ``num_frames`` frames; returns the folder (``test.json`` and ``points/``).

    The 120 val scenes leave a paired difference between two runs' AP with about as much
    noise from the scenes as from training; these are five times as many, from the same
    scene generator and seed as train and val. Frame ids go on after the default train and
    val frames (``000720`` on), so they are unique in the data root too."""
    out_dir = osp.join(data_root, DEMO_TEST_DIR)
    info = osp.join(out_dir, 'test.json')
    if osp.isfile(info):
        with open(info) as f:
            if len(json.load(f)['data_list']) == num_frames:
                return out_dir
    print_log(f'[demo3d] generating {num_frames} held-out test scenes in {out_dir}',
              logger='current')
    make_split_3d(out_dir, 'test', num_frames, seed=0, split_index=2, first_frame=720)
    return out_dir


#: ObjectSample's databases of the demo's GT-sampling configs (``*_gt-sample.py``):
#: ``(info file, database folder)`` under the data root. The first is the 10% labeled
#: split's (the semi-supervised and 10% runs); the second every train frame's (the oracle's).
DEMO_GT_DATABASES = (('semi_anns/train.1@10.json', 'semi_anns/gt_database_1@10'),
                     ('train.json', 'gt_database_train'))


def ensure_demo_gt_databases(data_root: str) -> None:
    """Build the demo's GT-sampling databases (:data:`DEMO_GT_DATABASES`) in ``data_root``
    unless they are there (the demo data too), and check that the labeled split's holds no
    frame of the unlabeled split."""
    from .transforms.object_sample import check_database_leak, create_gt_database
    ensure_demo_data_3d(data_root)
    for info_file, out_dir in DEMO_GT_DATABASES:
        if not osp.isfile(osp.join(data_root, out_dir, 'dbinfos.json')):
            create_gt_database(osp.join(data_root, info_file), osp.join(data_root, out_dir),
                               classes=CLASSES)
    check_database_leak(osp.join(data_root, DEMO_GT_DATABASES[0][1], 'dbinfos.json'),
                        osp.join(data_root, 'semi_anns', 'train.1@10-unlabeled.json'))
