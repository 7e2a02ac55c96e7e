"""KITTI object-detection files (``calib``, ``label_2``, ``velodyne``) read into ssl_det's
point-cloud info format (:mod:`ssl_det.datasets.point_cloud_io`).

**Calibration** (``training/calib/000000.txt``): ``P2`` (3x4, rectified camera 2 -> image),
``R0_rect`` (3x3, camera 0 -> rectified camera), ``Tr_velo_to_cam`` (3x4, LiDAR -> camera 0).
Points map LiDAR -> rectified camera by ``lidar2cam = R0_rect_4x4 @ Tr_velo_to_cam_4x4``.

**Labels** (``training/label_2/000000.txt``), one object a line: ``type truncated occluded
alpha x1 y1 x2 y2 h w l x y z rotation_y`` -- the 2D box in pixels, the sizes in metres, the
*bottom* centre ``x y z`` in the rectified camera frame (x right, y down, z forward) and the
heading ``rotation_y`` about the camera's y axis. ``DontCare`` lines mark regions, not
objects; they are dropped and counted.
"""
import os
import os.path as osp
from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np

from ssl_det.structures import (camera_to_lidar, check_boxes3d, kitti_label_to_camera_boxes,
                                limit_period, points_in_boxes)
from .point_cloud_io import (INFO_CONVENTION, PointCloudDataError, dump_info_file,
                             load_points)

KITTI_CLASSES = ('Car', 'Pedestrian', 'Cyclist', 'Van', 'Truck', 'Person_sitting', 'Tram',
                 'Misc')
DONT_CARE = 'DontCare'
# KITTI's difficulty levels: (min 2D box height in px, max occlusion, max truncation)
KITTI_DIFFICULTY_LEVELS = ((40, 0, 0.15), (25, 1, 0.30), (25, 2, 0.50))
_CALIB_SHAPES = {'P2': (3, 4), 'R0_rect': (3, 3), 'Tr_velo_to_cam': (3, 4)}
_CALIB_ALIASES = {'R_rect': 'R0_rect', 'Tr_velo_cam': 'Tr_velo_to_cam'}  # tracking-set names


def _to_4x4(mat: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:mat.shape[0], :mat.shape[1]] = mat
    return out


def parse_kitti_calib(path: str) -> Dict[str, np.ndarray]:
    """Read a KITTI calibration file.

    Returns:
        ``P2`` (3, 4), ``R0_rect`` (3, 3), ``Tr_velo_to_cam`` (3, 4) as written, plus
        ``lidar2cam`` (4, 4) = ``R0_rect @ Tr_velo_to_cam`` (LiDAR -> rectified camera) and
        ``cam2img`` (4, 4) = ``P2`` padded with ``[0, 0, 0, 1]``; float64.
    """
    if not osp.isfile(path):
        raise PointCloudDataError(f'calibration file not found: {path}')
    values: Dict[str, List[float]] = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or ':' not in line:
                continue
            key, rest = line.split(':', 1)
            key = _CALIB_ALIASES.get(key.strip(), key.strip())
            try:
                values[key] = [float(v) for v in rest.split()]
            except ValueError as err:
                raise PointCloudDataError(f'{path}:{lineno}: {key} has a non-number: {err}')
    calib = {}
    for key, shape in _CALIB_SHAPES.items():
        if key not in values:
            raise PointCloudDataError(f'{path}: no {key} line (has {sorted(values)})')
        if len(values[key]) != shape[0] * shape[1]:
            raise PointCloudDataError(f'{path}: {key} has {len(values[key])} values, expected '
                                      f'{shape[0] * shape[1]}')
        calib[key] = np.array(values[key], dtype=np.float64).reshape(shape)
    calib['lidar2cam'] = _to_4x4(calib['R0_rect']) @ _to_4x4(calib['Tr_velo_to_cam'])
    calib['cam2img'] = _to_4x4(calib['P2'])
    return calib


def parse_kitti_label(path: str) -> Dict[str, np.ndarray]:
    """Read a KITTI ``label_2`` file (DontCare lines included).

    Returns:
        ``name`` (N,) str, ``truncated`` (N,) float, ``occluded`` (N,) int, ``alpha`` (N,),
        ``bbox`` (N, 4) x1 y1 x2 y2 px, ``dims_hwl`` (N, 3) m, ``location`` (N, 3) bottom centre
        in the rectified camera frame, ``rotation_y`` (N,) rad.
    """
    if not osp.isfile(path):
        raise PointCloudDataError(f'label file not found: {path}')
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 15:
                raise PointCloudDataError(
                    f'{path}:{lineno}: {len(fields)} fields, a KITTI label has 15 (type '
                    'truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y)')
            try:
                rows.append((fields[0], [float(v) for v in fields[1:15]]))
            except ValueError as err:
                raise PointCloudDataError(f'{path}:{lineno}: a non-number field: {err}')
    nums = np.array([r[1] for r in rows], dtype=np.float64).reshape(-1, 14)
    return dict(name=np.array([r[0] for r in rows], dtype=object),
                truncated=nums[:, 0], occluded=nums[:, 1].astype(np.int64), alpha=nums[:, 2],
                bbox=nums[:, 3:7], dims_hwl=nums[:, 7:10], location=nums[:, 10:13],
                rotation_y=nums[:, 13])


def kitti_difficulty(bbox: np.ndarray, occluded: np.ndarray,
                     truncated: np.ndarray) -> np.ndarray:
    """KITTI difficulty per object: 0 easy, 1 moderate, 2 hard, -1 none of them.

    The easiest level whose limits hold: 2D box height (``y2 - y1``) at least 40/25/25 px,
    occlusion at most 0/1/2, truncation at most 0.15/0.30/0.50.
    """
    height = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)
    height = height[:, 3] - height[:, 1]
    occluded = np.asarray(occluded).reshape(-1)
    truncated = np.asarray(truncated, dtype=np.float64).reshape(-1)
    difficulty = np.full(len(height), -1, dtype=np.int64)
    for level in reversed(range(len(KITTI_DIFFICULTY_LEVELS))):  # easiest level wins
        min_height, max_occ, max_trunc = KITTI_DIFFICULTY_LEVELS[level]
        ok = (height >= min_height) & (occluded <= max_occ) & (truncated <= max_trunc)
        difficulty[ok] = level
    return difficulty


def kitti_frame_ids(root: str, split_file: Optional[str] = None) -> List[str]:
    """Frame ids from ``split_file`` (one a line; a relative path is looked up under
    ``root`` first), else every ``training/velodyne/*.bin``, sorted."""
    if split_file is None:
        folder = osp.join(root, 'training', 'velodyne')
        if not osp.isdir(folder):
            raise PointCloudDataError(f'no KITTI point folder {folder}; KITTI_ROOT must hold '
                                      'training/{velodyne,label_2,calib}')
        ids = sorted(osp.splitext(n)[0] for n in os.listdir(folder) if n.endswith('.bin'))
        if not ids:
            raise PointCloudDataError(f'{folder} holds no .bin point files')
        return ids
    path = split_file
    if not osp.isabs(path) and osp.isfile(osp.join(root, path)):
        path = osp.join(root, path)
    if not osp.isfile(path):
        raise PointCloudDataError(f'split file not found: {split_file} (also looked under '
                                  f'{root})')
    with open(path) as f:
        ids = [line.strip() for line in f if line.strip()]
    if not ids:
        raise PointCloudDataError(f'split file {path} lists no frames')
    return ids


def kitti_frame_info(root: str, frame_id: str, info_dir: str,
                     point_dim: int = 4) -> Tuple[dict, int]:
    """One KITTI training frame as an ssl_det info frame.

    Boxes go camera -> LiDAR with :func:`ssl_det.structures.camera_to_lidar`;
    ``num_lidar_pts`` counts the frame's points inside each box; ``lidar_path`` is relative
    to ``info_dir`` (the info file's folder).

    Returns:
        ``(frame, num_dontcare)``.
    """
    training = osp.join(root, 'training')
    velodyne = osp.join(training, 'velodyne', f'{frame_id}.bin')
    label_file = osp.join(training, 'label_2', f'{frame_id}.txt')
    calib_file = osp.join(training, 'calib', f'{frame_id}.txt')
    for kind, path in (('point', velodyne), ('label', label_file), ('calibration', calib_file)):
        if not osp.isfile(path):
            raise PointCloudDataError(f'frame {frame_id}: {kind} file not found: {path}')
    calib = parse_kitti_calib(calib_file)
    labels = parse_kitti_label(label_file)
    unknown = sorted(set(labels['name'].tolist()) - set(KITTI_CLASSES) - {DONT_CARE})
    if unknown:
        raise PointCloudDataError(f'{label_file}: unknown object types {unknown}; KITTI has '
                                  f'{KITTI_CLASSES} and {DONT_CARE}')
    keep = labels['name'] != DONT_CARE
    num_dontcare = int((~keep).sum())
    cam_boxes = kitti_label_to_camera_boxes(labels['dims_hwl'][keep], labels['location'][keep],
                                            labels['rotation_y'][keep])
    boxes = np.asarray(camera_to_lidar(cam_boxes, calib['lidar2cam']), dtype=np.float64)
    boxes[:, 6] = limit_period(boxes[:, 6])
    check_boxes3d(boxes, where=f'{label_file} (frame {frame_id})')

    points = load_points(velodyne, point_dim, frame_id=frame_id)
    num_pts = (points_in_boxes(points, boxes).sum(axis=0) if len(boxes)
               else np.zeros(0, dtype=np.int64))
    difficulty = kitti_difficulty(labels['bbox'][keep], labels['occluded'][keep],
                                  labels['truncated'][keep])
    instances = [
        dict(bbox_3d=[float(v) for v in box], label_name=str(name), difficulty=int(diff),
             num_lidar_pts=int(n), bbox=[float(v) for v in bbox2d], truncated=float(trunc),
             occluded=int(occ))
        for box, name, diff, n, bbox2d, trunc, occ in zip(
            boxes, labels['name'][keep], difficulty, num_pts, labels['bbox'][keep],
            labels['truncated'][keep], labels['occluded'][keep])]
    frame = dict(
        frame_id=frame_id,
        lidar_path=osp.relpath(osp.abspath(velodyne), osp.abspath(info_dir)),
        num_point_features=int(point_dim),
        instances=instances,
        calib=dict(lidar2cam=calib['lidar2cam'].tolist(), cam2img=calib['cam2img'].tolist()))
    if frame_id.isdigit():
        frame['sample_idx'] = int(frame_id)
    return frame, num_dontcare


def convert_kitti(root: str, out: str, split_file: Optional[str] = None,
                  point_dim: int = 4) -> dict:
    """Write an ssl_det info file (``.json`` or ``.pkl``) for KITTI's training frames.

    Args:
        root: KITTI_ROOT, holding ``training/{velodyne,label_2,calib}``.
        out: the info file to write; point paths in it are relative to its folder, so the
            file and the data can move together.
        split_file: frame ids, one a line (e.g. ``ImageSets/train.txt``). Default: all.
        point_dim: float32 values per point in the ``.bin`` files. Default: 4.

    Returns:
        A summary: ``out``, ``frames``, ``boxes`` (Counter per class), ``dontcare``
        (dropped DontCare lines), ``empty_boxes`` (boxes with no point inside).
    """
    frame_ids = kitti_frame_ids(root, split_file)
    info_dir = osp.dirname(osp.abspath(out))
    data_list, boxes, dontcare, empty = [], Counter(), 0, 0
    for frame_id in frame_ids:
        frame, n_dontcare = kitti_frame_info(root, frame_id, info_dir, point_dim)
        data_list.append(frame)
        dontcare += n_dontcare
        for inst in frame['instances']:
            boxes[inst['label_name']] += 1
            empty += inst['num_lidar_pts'] == 0
    classes = [name for name in KITTI_CLASSES if boxes[name]]
    metainfo = dict(classes=classes, point_dim=int(point_dim), box_convention=INFO_CONVENTION,
                    dataset='kitti', source=osp.abspath(root))
    dump_info_file(dict(metainfo=metainfo, data_list=data_list), out)
    return dict(out=out, frames=len(data_list), boxes=boxes, dontcare=dontcare,
                empty_boxes=int(empty))
