"""Reading point files and ssl_det's point-cloud info files.

**Info file** (``.json`` or ``.pkl``, the same structure)::

    {"metainfo": {"classes": ["Car", "Pedestrian", "Cyclist"], "point_dim": 4,
                  "box_convention": "ssl_det_lidar_v1"},
     "data_list": [
       {"frame_id": "000000",
        "lidar_path": "points/000000.bin",      # relative to the info file's folder, or absolute
        "num_point_features": 4,                # optional, defaults to metainfo.point_dim
        "instances": [{"bbox_3d": [x, y, z, dx, dy, dz, yaw], "label_name": "Car",
                       "difficulty": 0,         # optional: 0 easy, 1 moderate, 2 hard, -1 unknown
                       "num_lidar_pts": 153}],  # optional
        "calib": {"lidar2cam": [[...4x4...]], "cam2img": [[...]]}}   # optional
     ]}

Boxes are in ssl_det's convention (:mod:`ssl_det.structures.box3d`). An unlabeled split's
frames have ``"instances": []`` and ``metainfo.unlabeled = true``.

**Point files**: KITTI-style ``.bin`` (float32, ``point_dim`` values per point, x y z first),
``.npy`` (N, C), and through open3d ``.pcd`` / ``.ply`` (x y z, plus intensity from a ``.pcd``
field or colours' first channel when present, else zeros, so every frame has ``point_dim``
columns).
"""
import json
import os
import os.path as osp
import pickle
from typing import Dict, Optional

import numpy as np

INFO_CONVENTION = 'ssl_det_lidar_v1'


class PointCloudDataError(ValueError):
    """Bad point-cloud input; the message names the file (and frame)."""


def _where(path: str, frame_id: Optional[str]) -> str:
    return f'{path} (frame {frame_id})' if frame_id is not None else path


def load_points(path: str, point_dim: int = 4, frame_id: Optional[str] = None,
                check_finite: bool = True) -> np.ndarray:
    """Read one point file into a float32 (N, point_dim) array.

    Raises :class:`PointCloudDataError` naming the file (and frame) when it is missing, when
    a ``.bin`` size is not a multiple of ``point_dim`` float32 values, when the array has
    fewer than 3 columns, or (``check_finite``) when any coordinate is NaN/Inf.
    """
    where = _where(path, frame_id)
    if not osp.isfile(path):
        raise PointCloudDataError(f'point file not found: {where}')
    ext = osp.splitext(path)[1].lower()
    if ext == '.bin':
        size = osp.getsize(path)
        if size % (4 * point_dim):
            raise PointCloudDataError(
                f'{where}: {size} bytes is not a whole number of points of {point_dim} float32 '
                f'values ({4 * point_dim} bytes each); is point_dim (num_point_features) right?')
        points = np.fromfile(path, dtype=np.float32).reshape(-1, point_dim)
    elif ext == '.npy':
        points = np.load(path).astype(np.float32)
        if points.ndim != 2:
            raise PointCloudDataError(f'{where}: expected an (N, C) array, got {points.shape}')
    elif ext in ('.pcd', '.ply'):
        points = _load_open3d(path, point_dim, where)
    else:
        raise PointCloudDataError(f'{where}: unsupported point file type {ext!r} '
                                  '(.bin, .npy, .pcd, .ply)')
    if points.shape[1] < 3:
        raise PointCloudDataError(f'{where}: points need x, y, z; got {points.shape[1]} columns')
    if check_finite:
        bad = ~np.isfinite(points).all(axis=1)
        if bad.any():
            raise PointCloudDataError(
                f'{where}: {int(bad.sum())} of {len(points)} points have NaN/Inf values '
                f'(first at row {int(np.flatnonzero(bad)[0])})')
    return points


def _load_open3d(path: str, point_dim: int, where: str) -> np.ndarray:
    try:
        import open3d as o3d
    except ImportError as err:  # pragma: no cover - depends on the machine
        raise PointCloudDataError(
            f'{where}: reading .pcd/.ply needs open3d (pip install open3d-cpu; on Debian '
            f'also apt-get install libusb-1.0-0): {err}') from err
    columns = []
    if path.lower().endswith('.pcd'):
        cloud = o3d.t.io.read_point_cloud(path)
        if 'positions' not in cloud.point:
            raise PointCloudDataError(f'{where}: no points could be read')
        xyz = cloud.point['positions'].numpy().astype(np.float32)
        if 'intensity' in cloud.point:
            columns.append(cloud.point['intensity'].numpy().reshape(-1, 1).astype(np.float32))
        elif 'colors' in cloud.point:
            columns.append(cloud.point['colors'].numpy()[:, :1].astype(np.float32))
    else:
        cloud = o3d.io.read_point_cloud(path)
        xyz = np.asarray(cloud.points, dtype=np.float32)
        if cloud.has_colors():
            columns.append(np.asarray(cloud.colors, dtype=np.float32)[:, :1])
    if len(xyz) == 0:
        raise PointCloudDataError(f'{where}: no points could be read (empty or corrupt file)')
    points = np.concatenate([xyz] + columns, axis=1)
    if points.shape[1] < point_dim:
        pad = np.zeros((len(points), point_dim - points.shape[1]), np.float32)
        points = np.concatenate([points, pad], axis=1)
    return points[:, :max(point_dim, 3)]


def save_points(path: str, points: np.ndarray) -> None:
    """Write (N, C) points as a KITTI-style float32 ``.bin``."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    np.ascontiguousarray(points, dtype=np.float32).tofile(path)


def load_json_or_pickle(path: str, what: str = 'info'):
    """Read a ``.json`` or ``.pkl`` file; errors name ``what`` kind of file it should be."""
    if not osp.isfile(path):
        raise PointCloudDataError(f'{what} file not found: {path}')
    if path.endswith('.json'):
        with open(path) as f:
            return json.load(f)
    if path.endswith(('.pkl', '.pickle')):
        with open(path, 'rb') as f:
            return pickle.load(f)
    raise PointCloudDataError(f'{path}: {what} files are .json or .pkl')


def load_info_file(path: str) -> Dict:
    """Read an info file (``.json`` or ``.pkl``) into ``{'metainfo', 'data_list'}``."""
    info = load_json_or_pickle(path, 'info')
    if not isinstance(info, dict) or 'data_list' not in info:
        raise PointCloudDataError(f'{path}: expected a dict with "metainfo" and "data_list"')
    info.setdefault('metainfo', {})
    return info


def dump_info_file(info: Dict, path: str) -> None:
    """Write an info file (``.json`` or ``.pkl`` by extension), atomically."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    if path.endswith('.json'):
        with open(tmp, 'w') as f:
            json.dump(info, f, default=_jsonable)
    else:
        with open(tmp, 'wb') as f:
            pickle.dump(info, f)
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f'not JSON serialisable: {type(value)}')


def resolve_path(path: str, info_file: str, data_root: Optional[str] = None) -> str:
    """A frame's point path: absolute as given, else relative to ``data_root`` when set,
    else to the info file's folder."""
    if osp.isabs(path):
        return path
    base = data_root if data_root else osp.dirname(osp.abspath(info_file))
    return osp.join(base, path)
