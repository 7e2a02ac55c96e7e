"""Reading the info ``.pkl`` files that mmdet3d 1.x's data preparation writes, as ssl_det frames.

**mmdet3d 1.x info files** (``tools/create_data.py`` / ``update_infos_to_v2.py``)::

    {"metainfo": {"categories": {"Pedestrian": 0, "Cyclist": 1, "Car": 2, ..., "DontCare": -1},
                  "dataset": "kitti", "info_version": "1.1"},
     "data_list": [
       {"sample_idx": 0,
        "lidar_points": {"num_pts_feats": 4, "lidar_path": "000000.bin"},
        "images": {"CAM2": {"lidar2cam": 4x4, "cam2img": 4x4, ...}, ...},
        "instances": [{"bbox_3d": [...7], "bbox_label_3d": 2, "difficulty": 0,
                       "num_lidar_pts": 153, ...}]}]}

``lidar_path`` is a bare file name, relative to ``data_root`` + ``data_prefix['pts']`` of the
dataset config (mmdet3d's KITTI configs use ``data_prefix=dict(pts='training/velodyne_reduced')``).
``bbox_label_3d`` indexes ``categories``; ``-1`` marks boxes mmdet3d ignores (KITTI's
``DontCare``), which are removed here and counted.

**What ``bbox_3d`` means depends on the dataset** (mmdet3d's dataset classes decide, not the file):

- ``'camera'`` (KITTI; Waymo infos made by ``update_infos_to_v2``): a camera box
  ``(x, y, z, l, h, w, ry)`` with ``(x, y, z)`` the *bottom* centre in the rectified camera
  frame; mmdet3d converts it with ``inv(images[cam]['lidar2cam'])`` (``cam`` = ``CAM2`` for
  KITTI, ``CAM_FRONT`` for Waymo). Converted here with
  :func:`ssl_det.structures.camera_to_lidar`.
- ``'lidar'`` (nuScenes, Lyft, Waymo infos from mmdet3d >= 1.2's converter): a LiDAR box
  ``(x, y, z, l, w, h, yaw)`` with ``z`` the box's *gravity centre* -- mmdet3d reads these
  with ``LiDARInstance3DBoxes(..., origin=(0.5, 0.5, 0.5))`` -- i.e. already ssl_det's
  convention; extra columns (velocity) are dropped.
- ``'lidar_bottom'``: a LiDAR box with ``z`` at the *bottom* centre, i.e. the tensor of an
  mmdet3d ``LiDARInstance3DBoxes`` as-is (hand-written infos); converted with
  :func:`ssl_det.structures.from_mmdet3d_lidar`.
"""
from collections import Counter
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
from mmengine.logging import print_log

from ssl_det.structures import (camera_to_lidar, from_mmdet3d_lidar,
                                limit_period)
from .point_cloud_io import PointCloudDataError

BOX_FRAMES = ('camera', 'lidar', 'lidar_bottom')
# metainfo['dataset'] -> the meaning of bbox_3d in that dataset's mmdet3d infos
_DATASET_BOX_FRAME = {'kitti': 'camera', 'nuscenes': 'lidar', 'lyft': 'lidar'}
_DEFAULT_CAM_KEY = {'kitti': 'CAM2', 'waymo': 'CAM_FRONT'}


def is_mmdet3d_info(info: Mapping) -> bool:
    """Whether a loaded info dict is in mmdet3d 1.x's form (rather than ssl_det's)."""
    meta = info.get('metainfo') or {}
    if 'categories' in meta:
        return True
    data_list = info.get('data_list') or []
    return bool(data_list) and isinstance(data_list[0], Mapping) and 'lidar_points' in data_list[0]


def mmdet3d_label_names(metainfo: Mapping, source: str = '') -> Dict[int, str]:
    """``{bbox_label_3d: class name}`` from ``metainfo['categories']``; ids ``< 0`` (ignored
    classes such as ``DontCare``) are left out."""
    categories = metainfo.get('categories')
    if not isinstance(categories, Mapping) or not categories:
        raise PointCloudDataError(
            f'{source}: an mmdet3d info file needs metainfo.categories ({{name: id}}) to name '
            f'its labels; got metainfo keys {sorted(metainfo)}')
    names: Dict[int, str] = {}
    for name, idx in categories.items():
        idx = int(idx)
        if idx < 0:
            continue
        if idx in names:
            raise PointCloudDataError(f'{source}: categories {names[idx]!r} and {name!r} '
                                      f'share the id {idx}')
        names[idx] = str(name)
    return names


def mmdet3d_classes(metainfo: Mapping, source: str = '') -> Tuple[str, ...]:
    """The class names of an mmdet3d info file, in label-id order."""
    names = mmdet3d_label_names(metainfo, source)
    return tuple(names[i] for i in sorted(names))


def resolve_box_frame(box_frame: str, metainfo: Mapping, source: str = '') -> str:
    """Decide what ``bbox_3d`` means (``'camera'``, ``'lidar'`` or ``'lidar_bottom'``).

    ``'auto'`` reads ``metainfo['dataset']``: ``kitti`` -> camera, ``nuscenes``/``lyft`` ->
    lidar; anything else (Waymo, whose infos changed meaning between mmdet3d versions, or a
    custom dataset) must be given explicitly. The decision is logged.
    """
    dataset = str(metainfo.get('dataset', '')).lower()
    if box_frame == 'auto':
        if dataset not in _DATASET_BOX_FRAME:
            hint = (' (Waymo infos from update_infos_to_v2 / mmdet3d < 1.2 hold camera boxes, '
                    "those from mmdet3d >= 1.2's waymo_converter hold LiDAR boxes)"
                    if dataset == 'waymo' else '')
            raise PointCloudDataError(
                f"{source}: box_frame='auto' cannot tell what bbox_3d means for metainfo "
                f"dataset {dataset or None!r}{hint}; set box_frame to one of {BOX_FRAMES}")
        frame, why = _DATASET_BOX_FRAME[dataset], f"dataset {dataset!r}"
    elif box_frame in BOX_FRAMES:
        frame, why = box_frame, 'set by box_frame'
    else:
        raise ValueError(f"box_frame must be 'auto' or one of {BOX_FRAMES}, got {box_frame!r}")
    meaning = {
        'camera': 'camera boxes (x, y, z bottom, l, h, w, ry) in the rectified camera frame, '
                  'converted to LiDAR with lidar2cam',
        'lidar': 'LiDAR boxes (x, y, z centre, l, w, h, yaw), kept as they are',
        'lidar_bottom': 'LiDAR boxes (x, y, z bottom, l, w, h, yaw), z moved up by h/2',
    }[frame]
    print_log(f'{source}: mmdet3d info file, bbox_3d read as {meaning} ({why})',
              logger='current')
    return frame


def _matrix(images: Mapping, cam_key: str, name: str, where: str) -> Optional[np.ndarray]:
    cam = images.get(cam_key) if isinstance(images, Mapping) else None
    if not isinstance(cam, Mapping) or cam.get(name) is None:
        return None
    mat = np.asarray(cam[name], dtype=np.float64)
    if name == 'lidar2cam' and mat.shape != (4, 4):
        raise PointCloudDataError(f"{where}: images['{cam_key}']['lidar2cam'] must be 4x4, "
                                  f'got shape {mat.shape}')
    return mat


def convert_mmdet3d_info(info: Mapping, label_names: Mapping[int, str], box_frame: str,
                         cam_key: str = 'CAM2', source: str = '',
                         ignored: Optional[Counter] = None) -> dict:
    """One mmdet3d 1.x ``data_list`` item -> one frame of ssl_det's info format.

    Args:
        info: the mmdet3d frame (``sample_idx``, ``lidar_points``, ``images``, ``instances``).
        label_names: ``{bbox_label_3d: name}`` (:func:`mmdet3d_label_names`).
        box_frame: ``'camera'``, ``'lidar'`` or ``'lidar_bottom'`` (module docstring).
        cam_key: the camera whose ``lidar2cam`` converts camera boxes. Defaults to ``'CAM2'``.
        source: the info file's name, for error messages.
        ignored: a Counter that gets ``'label -1'`` += the boxes removed for label ``-1``.

    Returns:
        ``{'frame_id', 'sample_idx', 'lidar_path', 'num_point_features', 'instances':
        [{'bbox_3d', 'label_name', 'difficulty', 'num_lidar_pts'}], 'calib'?}`` with boxes in
        ssl_det's LiDAR convention; ``lidar_path`` is left as in the file (relative to the
        dataset's ``data_root`` + ``data_prefix['pts']``); ``frame_id`` is the point file's
        stem.
    """
    if box_frame not in BOX_FRAMES:
        raise ValueError(f'box_frame must be one of {BOX_FRAMES}, got {box_frame!r}')
    points = info.get('lidar_points')
    sample_idx = info.get('sample_idx')
    if not isinstance(points, Mapping) or not points.get('lidar_path'):
        raise PointCloudDataError(f'{source} frame sample_idx={sample_idx}: no '
                                  "lidar_points.lidar_path (a camera-only info file?)")
    lidar_path = str(points['lidar_path'])
    frame_id = lidar_path.replace('\\', '/').rsplit('/', 1)[-1].rsplit('.', 1)[0]
    where = f'{source} frame {frame_id}'

    images = info.get('images') or {}
    lidar2cam = _matrix(images, cam_key, 'lidar2cam', where)
    cam2img = _matrix(images, cam_key, 'cam2img', where)

    keep, names = [], []
    for i, inst in enumerate(info.get('instances') or []):
        label = inst.get('bbox_label_3d', inst.get('bbox_label'))
        if label is None or 'bbox_3d' not in inst:
            raise PointCloudDataError(f'{where}: instance #{i} lacks bbox_3d or bbox_label_3d '
                                      f'(keys {sorted(inst)})')
        label = int(label)
        if label < 0:
            if ignored is not None:
                ignored['label -1'] += 1
            continue
        if label not in label_names:
            raise PointCloudDataError(
                f'{where}: instance #{i} has bbox_label_3d={label}, which is not in '
                f'metainfo.categories {dict((v, k) for k, v in label_names.items())}')
        if len(inst['bbox_3d']) < 7:
            raise PointCloudDataError(f'{where}: instance #{i} bbox_3d has '
                                      f'{len(inst["bbox_3d"])} values, expected 7')
        keep.append(inst)
        names.append(label_names[label])

    raw = np.array([inst['bbox_3d'][:7] for inst in keep], dtype=np.float64).reshape(-1, 7)
    if box_frame == 'camera':
        if lidar2cam is None and len(raw):
            raise PointCloudDataError(
                f"{where}: camera boxes need images['{cam_key}']['lidar2cam'] to reach the "
                f'LiDAR frame; cameras present: {sorted(images)} (set cam_key)')
        boxes = camera_to_lidar(raw, lidar2cam) if len(raw) else raw
    elif box_frame == 'lidar_bottom':
        boxes = from_mmdet3d_lidar(raw)
    else:
        boxes = raw
    boxes = np.asarray(boxes, dtype=np.float64)
    boxes[:, 6] = limit_period(boxes[:, 6])

    instances = []
    for inst, name, box in zip(keep, names, boxes):
        difficulty = inst.get('difficulty')
        num_pts = inst.get('num_lidar_pts')
        instances.append(dict(bbox_3d=box.tolist(), label_name=name,
                              difficulty=-1 if difficulty is None else int(difficulty),
                              num_lidar_pts=-1 if num_pts is None else int(num_pts)))
    out = dict(frame_id=frame_id, lidar_path=lidar_path, instances=instances)
    if sample_idx is not None:
        out['sample_idx'] = sample_idx
    if points.get('num_pts_feats') is not None:
        out['num_point_features'] = int(points['num_pts_feats'])
    calib = {}
    if lidar2cam is not None:
        calib['lidar2cam'] = lidar2cam
    if cam2img is not None:
        calib['cam2img'] = cam2img
    if calib:
        out['calib'] = calib
    return out


def default_cam_key(metainfo: Mapping) -> str:
    """The camera mmdet3d uses for a dataset's ``lidar2cam`` (``CAM2`` for KITTI)."""
    return _DEFAULT_CAM_KEY.get(str(metainfo.get('dataset', '')).lower(), 'CAM2')
