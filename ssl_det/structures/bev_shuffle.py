"""Shuffle augmentation's geometry (HSSDA): the BEV range cut into a grid of patches whose
contents swap places.

The range ``[x_min, y_min, x_max, y_max]`` is cut into ``nx × ny`` equal patches, numbered
row-major (``k = iy * nx + ix``). A shuffle is a permutation ``perm``: the contents of patch
``k`` move to patch ``perm[k]`` by a pure translation (the patches keep their orientation),
so a point moves by ``origin(perm[k]) - origin(k)`` and so does a box that lies wholly inside
patch ``k``. A box cut by a patch border has no single image (its parts go to different
places): :func:`shuffle_boxes` reports it, and the caller ignores it rather than splitting it;
:func:`shuffle_box_pieces` gives one copy per patch it touches, moved with that patch, whose
union covers every part (for ignore regions). Points outside the range stay where they are.

The record ``info = dict(range=[x_min, y_min, x_max, y_max], grid=(nx, ny), perm=[...],
mode=...)`` travels with the sample (``results['bev_shuffle']``). ``mode`` says how the
labels follow: ``'move_boxes'`` (boxes move with their patch, cut boxes are ignored) or
``'unshuffle_features'`` (HSSDA's code: boxes stay in the unshuffled frame and the detector
moves its BEV feature maps back after the backbone, :func:`unshuffle_bev_map`).
"""
from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from .box3d import _boxes, _like, _np, box3d_corners


SHUFFLE_MODES = ('move_boxes', 'unshuffle_features')


def make_shuffle(point_cloud_range, grid: Tuple[int, int], perm,
                 mode: str = 'move_boxes') -> Dict:
    """Validate and build a shuffle record from a 4- or 6-value range."""
    r = [float(v) for v in point_cloud_range]
    bev = [r[0], r[1], r[3], r[4]] if len(r) == 6 else r
    nx, ny = int(grid[0]), int(grid[1])
    perm = [int(p) for p in perm]
    if nx < 1 or ny < 1 or sorted(perm) != list(range(nx * ny)):
        raise ValueError(f'a shuffle of a {nx}x{ny} grid needs a permutation of '
                         f'0..{nx * ny - 1}, got {perm}')
    if mode not in SHUFFLE_MODES:
        raise ValueError(f'shuffle mode must be one of {SHUFFLE_MODES}, got {mode!r}')
    return dict(range=bev, grid=(nx, ny), perm=perm, mode=mode)


def moves_boxes(info) -> bool:
    """Whether boxes follow the shuffle by moving with their patch (``'move_boxes'``, the
    mode of records made before modes existed too)."""
    return info is not None and info.get('mode', 'move_boxes') == 'move_boxes'


def moves_features(info) -> bool:
    """Whether the detector must move its feature maps back (a non-identity shuffle in
    ``'unshuffle_features'`` mode)."""
    return (info is not None and not moves_boxes(info)
            and list(info['perm']) != list(range(len(info['perm']))))


def _patch_cells(info: Dict, map_range: Sequence[float], shape: Tuple[int, int]):
    """(K, 4) ``[col0, col1, row0, row1)`` of every patch on a (rows, cols) map that covers
    ``map_range = [x_min, y_min, x_max, y_max]``; patch borders must fall on cell borders."""
    x0, y0, w, h, nx, ny = _geometry(info)
    mx0, my0, mx1, my1 = [float(v) for v in map_range]
    rows, cols = shape
    cell_x, cell_y = (mx1 - mx0) / cols, (my1 - my0) / rows
    edges_x = (x0 + w * np.arange(nx + 1) - mx0) / cell_x
    edges_y = (y0 + h * np.arange(ny + 1) - my0) / cell_y
    for name, edges, size in (('x', edges_x, cols), ('y', edges_y, rows)):
        if (np.abs(edges - np.round(edges)) > 1e-4).any() or edges.min() < -1e-4 \
                or edges.max() > size + 1e-4:
            raise ValueError(
                f'the shuffle patches ({nx}x{ny} over {info["range"]}) do not fall on whole '
                f'cells of a {rows}x{cols} feature map over {list(map_range)} in {name} '
                f'(patch borders at {np.round(edges, 3).tolist()} cells); choose a grid that '
                'divides the map at every backbone stride')
    ex, ey = np.round(edges_x).astype(int), np.round(edges_y).astype(int)
    k = np.arange(nx * ny)
    ix, iy = k % nx, k // nx
    return np.stack([ex[ix], ex[ix + 1], ey[iy], ey[iy + 1]], axis=1)


def unshuffle_bev_map(feat: torch.Tensor, info: Dict, map_range: Sequence[float]) -> torch.Tensor:
    """Move the patches of a (C, rows, cols) BEV feature map of a shuffled scene back to
    where they came from: the cells of source patch ``k`` take the cells of patch
    ``perm[k]``. ``map_range = [x_min, y_min, x_max, y_max]`` is the area the map covers
    (rows along y, columns along x); cells outside the shuffle's range stay."""
    cells = _patch_cells(info, map_range, tuple(feat.shape[-2:]))
    out = feat.clone()
    for k, dst in enumerate(info['perm']):
        c0, c1, r0, r1 = cells[k]
        d0, d1, s0, s1 = cells[dst]
        out[..., r0:r1, c0:c1] = feat[..., s0:s1, d0:d1]
    return out


def _geometry(info: Dict):
    x0, y0, x1, y1 = info['range']
    nx, ny = info['grid']
    return x0, y0, (x1 - x0) / nx, (y1 - y0) / ny, nx, ny


def patch_offsets(info: Dict) -> np.ndarray:
    """(K, 2) translation of each source patch's contents."""
    x0, y0, w, h, nx, ny = _geometry(info)
    k = np.arange(nx * ny)
    dst = np.asarray(info['perm'])
    src_xy = np.stack([(k % nx) * w, (k // nx) * h], axis=1)
    dst_xy = np.stack([(dst % nx) * w, (dst // nx) * h], axis=1)
    return (dst_xy - src_xy).astype(np.float64)


def patch_index(xy: np.ndarray, info: Dict) -> np.ndarray:
    """(N,) patch of each BEV position, -1 outside the range (right/top edges belong to
    the last patch)."""
    x0, y0, w, h, nx, ny = _geometry(info)
    ix = np.floor((xy[:, 0] - x0) / w).astype(np.int64)
    iy = np.floor((xy[:, 1] - y0) / h).astype(np.int64)
    x1, y1 = x0 + nx * w, y0 + ny * h
    ix = np.where(np.isclose(xy[:, 0], x1), nx - 1, ix)
    iy = np.where(np.isclose(xy[:, 1], y1), ny - 1, iy)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    return np.where(inside, iy * nx + ix, -1)


def _move_points(points, info: Dict, inverse: bool):
    arr = _np(points)
    xy = arr[:, :2].astype(np.float64)
    offsets = patch_offsets(info)
    if inverse:
        # a shuffled point sits in destination patch d; it came from perm^-1(d)
        inv = np.argsort(np.asarray(info['perm']))
        k = patch_index(xy, info)
        src = np.where(k >= 0, inv[np.maximum(k, 0)], -1)
        shift = np.where(src[:, None] >= 0, -offsets[np.maximum(src, 0)], 0.0)
    else:
        k = patch_index(xy, info)
        shift = np.where(k[:, None] >= 0, offsets[np.maximum(k, 0)], 0.0)
    out = np.array(arr, copy=True)
    out[:, :2] = (xy + shift).astype(out.dtype)
    return _like(out, points)


def shuffle_points(points, info: Dict):
    """Move (N, C) points with their patches."""
    return _move_points(points, info, inverse=False)


def unshuffle_points(points, info: Dict):
    """Undo :func:`shuffle_points` (each point back to its source patch)."""
    return _move_points(points, info, inverse=True)


def _corner_patches(boxes: np.ndarray, info: Dict) -> np.ndarray:
    corners = box3d_corners(boxes)[:, :4, :2].reshape(-1, 2)
    return patch_index(corners, info).reshape(len(boxes), 4)


def shuffle_boxes(boxes, info: Dict):
    """Move boxes that lie wholly in one patch with it; returns ``(boxes, whole)`` where
    ``whole`` (N,) bool is False for boxes cut by a patch border or leaving the range
    (those are returned unmoved: the caller ignores them)."""
    arr = _boxes(boxes)
    out = arr.copy()
    if len(arr) == 0:
        return _like(out, boxes), np.zeros(0, dtype=bool)
    patches = _corner_patches(arr, info)
    whole = (patches[:, :1] == patches).all(axis=1) & (patches[:, 0] >= 0)
    offsets = patch_offsets(info)
    out[whole, :2] += offsets[patches[whole, 0]]
    return _like(out, boxes), whole


def shuffle_box_pieces(boxes, info: Dict, return_patch: bool = False):
    """For each box, one copy per patch its footprint touches (corners or centre), moved
    with that patch; returns ``(pieces, owner)`` with ``owner`` the source box index. The
    union covers the box's parts after the shuffle (used for ignore regions). With
    ``return_patch``, also each piece's patch after the shuffle (the patch whose part of
    the box it stands for; -1 for a box wholly outside the range, returned unmoved)."""
    arr = _boxes(boxes)
    if len(arr) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return (_like(arr.copy(), boxes), empty) + ((empty,) if return_patch else ())
    patches = np.concatenate([_corner_patches(arr, info),
                              patch_index(arr[:, :2], info)[:, None]], axis=1)
    # a box larger than a patch can touch patches none of its corners are in: add the
    # patches between the extreme corner patches
    offsets = patch_offsets(info)
    nx = info['grid'][0]
    pieces, owner, dst = [], [], []
    for i, row in enumerate(patches):
        valid = row[row >= 0]
        if len(valid) == 0:
            pieces.append(arr[i])
            owner.append(i)
            dst.append(-1)
            continue
        ix, iy = valid % nx, valid // nx
        for yy in range(iy.min(), iy.max() + 1):
            for xx in range(ix.min(), ix.max() + 1):
                piece = arr[i].copy()
                piece[:2] += offsets[yy * nx + xx]
                pieces.append(piece)
                owner.append(i)
                dst.append(info['perm'][yy * nx + xx])
    out = (_like(np.stack(pieces), boxes), np.asarray(owner, dtype=np.int64))
    return out + ((np.asarray(dst, dtype=np.int64),) if return_patch else ())


def patch_sources(num_scenes: int, info: Dict, generator=None) -> np.ndarray:
    """A cross-scene patch mix of ``num_scenes`` shuffled scenes of one grid: an
    (num_scenes, K) array whose row ``m`` names, for each patch, the scene whose contents
    fill that patch of mixed scene ``m``. Each column is a random permutation of the
    scenes, so every scene's every patch lands in exactly one mixed scene (no point or box
    is lost or doubled)."""
    nx, ny = info['grid']
    cols = [torch.randperm(num_scenes, generator=generator) for _ in range(nx * ny)]
    return torch.stack(cols, dim=1).numpy().astype(np.int64)


def taken_by(patches: np.ndarray, sources: np.ndarray, scene: int, mixed: int) -> np.ndarray:
    """Which items of ``scene`` (their patches, -1 outside the grid) mixed scene ``mixed``
    takes: those in a patch it fills from ``scene``; items outside the grid stay in their
    own scene."""
    patches = np.asarray(patches, dtype=np.int64)
    inside = patches >= 0
    return np.where(inside, sources[mixed][np.maximum(patches, 0)] == scene, scene == mixed)
