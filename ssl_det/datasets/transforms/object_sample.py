"""Ground-truth object sampling ("GT paste"): a database of the labeled split's objects and a
transform that pastes them into a scene.

**Database** (written by :func:`create_gt_database`, or
``tools/dataset_converters/create_gt_database.py``), in ``out_dir``::

    dbinfos.json   {"metainfo": {"source_info_file": "/abs/labeled_infos.json",
                                 "source_frame_ids": [...every frame of that file...],
                                 "classes": [...], "point_dim": 4,
                                 "points_relative_to": "box_centre", ...},
                    "data_list": [{"name": "Car", "box": [x, y, z, dx, dy, dz, yaw],
                                   "num_points": 153, "frame_id": "000012",
                                   "instance_idx": 0, "difficulty": 0,
                                   "path": "objects/000012_Car_0.bin"}, ...]}
    objects/*.bin  float32 (num_points, point_dim) per object

An object's points are stored *relative to its box centre*: ``xyz - (x, y, z)`` (translated,
not rotated), so pasting the object at its recorded box adds the centre back. Only the frames
of the given info file are read; build it from the labeled split's info file, never from the
full training set, or the unlabeled frames' labels leak into training
(:func:`check_database_leak` checks a database against an unlabeled split's info file).
"""
import os.path as osp
import re
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log

from ssl_det.datasets.point_cloud_io import (INFO_CONVENTION, PointCloudDataError,
                                             dump_info_file, load_info_file, load_points,
                                             resolve_path, save_points)
from ssl_det.ops import overlaps_bev
from ssl_det.registry import TRANSFORMS
from ssl_det.structures import points_in_boxes

from .point_cloud import BOX_KEYS, get_aug_matrix

DB_TOOL = 'python tools/dataset_converters/create_gt_database.py LABELED_INFO_FILE --out-dir DB_DIR'


def create_gt_database(info_file: str,
                       out_dir: str,
                       classes: Optional[Sequence[str]] = None,
                       data_root: Optional[str] = None,
                       db_info_name: str = 'dbinfos.json') -> str:
    """Crop every box's points from the frames of ``info_file`` into a sampling database.

    Args:
        info_file (str): the *labeled split's* info file (:mod:`ssl_det.datasets.point_cloud_io`).
            A file marked ``metainfo.unlabeled`` is refused.
        out_dir (str): folder for ``db_info_name`` and ``objects/*.bin``.
        classes (Sequence[str], optional): class names to keep; all names when None.
        data_root (str, optional): base of relative ``lidar_path``s (default: the info file's
            folder), as in :func:`~ssl_det.datasets.point_cloud_io.resolve_path`.
        db_info_name (str): name of the database's info file (``.json`` or ``.pkl``).
            Defaults to ``'dbinfos.json'``.

    Returns:
        str: path of the database info file.
    """
    info = load_info_file(info_file)
    meta = info['metainfo']
    if meta.get('unlabeled'):
        raise ValueError(f'{info_file} is an unlabeled split (metainfo.unlabeled = true); build '
                         'the database from the labeled split\'s info file')
    keep_names = set(classes) if classes is not None else None
    objects: List[Dict] = []
    frame_ids: List[str] = []
    point_dim = None
    skipped = defaultdict(int)
    for frame in info['data_list']:
        frame_id = str(frame['frame_id'])
        frame_ids.append(frame_id)
        instances = frame.get('instances') or []
        if not instances:
            continue
        dim = int(frame.get('num_point_features', meta.get('point_dim', 4)))
        if point_dim is None:
            point_dim = dim
        elif dim != point_dim:
            raise PointCloudDataError(f'{info_file} (frame {frame_id}): {dim} point features, '
                                      f'earlier frames have {point_dim}; one database holds one '
                                      'point layout')
        points = load_points(resolve_path(frame['lidar_path'], info_file, data_root), dim,
                             frame_id)
        boxes = np.array([inst['bbox_3d'][:7] for inst in instances], dtype=np.float64)
        inside = points_in_boxes(points, boxes)
        for idx, inst in enumerate(instances):
            name = inst['label_name']
            if keep_names is not None and name not in keep_names:
                skipped[name] += 1
                continue
            rel = points[inside[:, idx]].copy()
            rel[:, :3] -= boxes[idx, :3].astype(np.float32)
            path = osp.join('objects', f'{_safe(frame_id)}_{_safe(name)}_{idx}.bin')
            save_points(osp.join(out_dir, path), rel)
            objects.append(dict(name=name, box=boxes[idx].tolist(), num_points=len(rel),
                                frame_id=frame_id, instance_idx=idx,
                                difficulty=int(inst.get('difficulty', -1)), path=path))
    if len(set(frame_ids)) != len(frame_ids):
        raise ValueError(f'{info_file}: frame ids repeat; they must be unique')
    db_meta = dict(source_info_file=osp.abspath(info_file), source_frame_ids=frame_ids,
                   classes=sorted(keep_names) if keep_names is not None else sorted(
                       {o['name'] for o in objects}),
                   point_dim=point_dim if point_dim is not None else meta.get('point_dim', 4),
                   points_relative_to='box_centre', box_convention=INFO_CONVENTION,
                   num_objects=len(objects))
    db_file = osp.join(out_dir, db_info_name)
    dump_info_file(dict(metainfo=db_meta, data_list=objects), db_file)
    counts = defaultdict(int)
    for obj in objects:
        counts[obj['name']] += 1
    print_log(f'GT database {db_file}: {len(objects)} objects {dict(counts)} from '
              f'{len(frame_ids)} frames of {info_file}'
              + (f'; skipped by class {dict(skipped)}' if skipped else ''), logger='current')
    return db_file


def _safe(name: str) -> str:
    return re.sub(r'[^A-Za-z0-9._-]', '_', name)


def check_database_leak(db_info_file: str, unlabeled_info_file: str) -> None:
    """Raise ``ValueError`` if the database was read from any frame of the unlabeled split."""
    db_meta = load_info_file(db_info_file)
    unlabeled = {str(f['frame_id']) for f in load_info_file(unlabeled_info_file)['data_list']}
    used = set(db_meta['metainfo'].get('source_frame_ids', []))
    used |= {str(o['frame_id']) for o in db_meta['data_list']}
    leaked = sorted(used & unlabeled)
    if leaked:
        raise ValueError(f'GT database {db_info_file} holds {len(leaked)} frame(s) of the '
                         f'unlabeled split {unlabeled_info_file} (first: {leaked[:5]}); rebuild '
                         f'it from the labeled split: {DB_TOOL}')


@TRANSFORMS.register_module()
class ObjectSample(BaseTransform):
    """Paste database objects (box + points) into the scene until each class of
    ``sample_groups`` has its target number of boxes.

    Per class (in ``sample_groups``' order), ``target - present`` candidates are drawn without
    replacement from the database objects of that class with at least ``min_points`` points;
    a candidate is accepted if its BEV footprint overlaps (rotated BEV IoU > 0) no box of the
    scene and no box accepted before it; up to ``max_trials`` rounds draw again for what is
    still missing. Each object is pasted at its recorded box (its stored points plus the box
    centre); the scene's points inside accepted boxes are removed
    (``remove_points_in_pasted_boxes``) and the boxes are appended with their labels, their
    database difficulty (-1 when unknown) and ``gt_ignore_flags`` False, for the keys of
    :data:`BOX_KEYS` present. Records ``results['num_pasted_objects']``.

    It works in the raw scene's frame (database boxes are raw boxes), so it must come before
    any geometric transform; it raises if ``lidar_aug_matrix`` is not the identity. The
    database is read at the first call; the objects' points are kept in memory when they
    total at most ``max_cached_points``, else read from their ``.bin`` per paste.
    Build the database from the labeled split only (see the module docstring).

    Args:
        db_info_file (str): the database's info file (``dbinfos.json``).
        sample_groups (dict): target number of boxes per class name.
            Defaults to ``dict(Car=10, Pedestrian=5, Cyclist=5)``.
        classes (Sequence[str]): the dataset's classes in label order (label = index).
            Defaults to ``('Car', 'Pedestrian', 'Cyclist')``.
        min_points (int | dict): least points of a database object to be drawn, one number or
            per class name (missing classes: 0). Defaults to 5.
        remove_points_in_pasted_boxes (bool): remove the scene's points inside pasted boxes.
            Defaults to True.
        max_trials (int): rounds of drawing per class. Defaults to 3.
        max_cached_points (int): keep all objects' points in memory up to this many points.
            Defaults to 2,000,000 (32 MB at 4 floats per point).
    """

    def __init__(self,
                 db_info_file: str,
                 sample_groups: Optional[Dict[str, int]] = None,
                 classes: Sequence[str] = ('Car', 'Pedestrian', 'Cyclist'),
                 min_points: Union[int, Dict[str, int]] = 5,
                 remove_points_in_pasted_boxes: bool = True,
                 max_trials: int = 3,
                 max_cached_points: int = 2_000_000) -> None:
        self.db_info_file = db_info_file
        self.sample_groups = dict(sample_groups if sample_groups is not None else
                                  dict(Car=10, Pedestrian=5, Cyclist=5))
        self.classes = tuple(classes)
        unknown = set(self.sample_groups) - set(self.classes)
        if unknown:
            raise ValueError(f'sample_groups names {sorted(unknown)} are not in classes '
                             f'{self.classes}')
        if any(int(n) != n or n < 0 for n in self.sample_groups.values()):
            raise ValueError(f'sample_groups targets must be ints >= 0, got {self.sample_groups}')
        if isinstance(min_points, dict):
            self.min_points = {c: int(min_points.get(c, 0)) for c in self.classes}
        else:
            self.min_points = {c: int(min_points) for c in self.classes}
        if max_trials < 1:
            raise ValueError(f'max_trials must be >= 1, got {max_trials}')
        self.remove_points_in_pasted_boxes = remove_points_in_pasted_boxes
        self.max_trials = int(max_trials)
        self.max_cached_points = int(max_cached_points)
        self._pools: Optional[Dict[str, List[Dict]]] = None
        self._point_dim: Optional[int] = None
        # not ``_cache``: mmcv's ``cache_randomness`` owns that attribute name
        self._points_cache: Optional[Dict[str, np.ndarray]] = None

    # ------------------------------------------------------------------ database
    def _load(self) -> None:
        if not osp.isfile(self.db_info_file):
            raise PointCloudDataError(f'GT database not found: {self.db_info_file}; build it '
                                      f'from the labeled split: {DB_TOOL}')
        db = load_info_file(self.db_info_file)
        if db['metainfo'].get('points_relative_to') != 'box_centre':
            raise PointCloudDataError(f'{self.db_info_file}: not a GT database written by '
                                      f'create_gt_database ({DB_TOOL})')
        self._point_dim = int(db['metainfo']['point_dim'])
        pools = {c: [] for c in self.sample_groups}
        for obj in db['data_list']:
            name = obj['name']
            if name in pools and obj['num_points'] >= self.min_points[name]:
                pools[name].append(obj)
        total = sum(o['num_points'] for pool in pools.values() for o in pool)
        if total <= self.max_cached_points:
            self._points_cache = {o['path']: self._read(o)
                                  for pool in pools.values() for o in pool}
        empty = [c for c, n in self.sample_groups.items() if n and not pools[c]]
        if empty:
            print_log(f'ObjectSample: {self.db_info_file} has no {empty} objects with enough '
                      f'points (min_points={self.min_points}); nothing of those is pasted',
                      logger='current', level=30)
        self._pools = pools

    def objects(self) -> List[tuple]:
        """Every object this sampler can draw, as ``(label, raw box (7,), raw points (N, D))``
        (the database read first when it has not been); ``ObjectBank.from_database`` keeps
        them."""
        if self._pools is None:
            self._load()
        return [(self.classes.index(name), np.asarray(obj['box'][:7], dtype=np.float64),
                 self._points_of(obj)) for name, pool in self._pools.items() for obj in pool]

    def _read(self, obj: Dict) -> np.ndarray:
        return load_points(resolve_path(obj['path'], self.db_info_file), self._point_dim,
                           f"{obj['frame_id']}, object {obj['instance_idx']}")

    def _points_of(self, obj: Dict) -> np.ndarray:
        if self._points_cache is not None:
            points = self._points_cache[obj['path']].copy()
        else:
            points = self._read(obj)
        points[:, :3] += np.asarray(obj['box'][:3], dtype=np.float32)
        return points

    # ------------------------------------------------------------------ sampling
    @staticmethod
    def _draw(tried: np.ndarray, num: int) -> np.ndarray:
        # several draws per call, so not cached by mmcv's ``cache_randomness``
        left = np.flatnonzero(~tried)
        return np.random.choice(left, min(num, len(left)), replace=False)

    def _select(self, name: str, need: int, occupied: np.ndarray) -> List[Dict]:
        pool = self._pools[name]
        tried = np.zeros(len(pool), dtype=bool)
        chosen: List[Dict] = []
        for _ in range(self.max_trials):
            if len(chosen) >= need or tried.all():
                break
            idx = self._draw(tried, need - len(chosen))
            tried[idx] = True
            for i in idx:
                box = np.asarray(pool[i]['box'][:7], dtype=np.float64)[None]
                if not _collides(box, occupied):
                    chosen.append(pool[i])
                    occupied = np.concatenate([occupied, box])
        return chosen

    def transform(self, results: Dict) -> Dict:
        matrix = get_aug_matrix(results)
        if not np.allclose(matrix, np.eye(4), atol=1e-9):
            raise ValueError(
                f"ObjectSample got frame {results.get('frame_id')} with a non-identity "
                f'lidar_aug_matrix {matrix.tolist()}: it pastes raw-frame database boxes, so '
                'put it before every geometric transform (RandomFlip3D, GlobalRotScaleTrans)')
        if self._pools is None:
            self._load()
        points = results['points']
        if points.shape[1] != self._point_dim:
            raise PointCloudDataError(
                f"frame {results.get('frame_id')} has {points.shape[1]} point features, GT "
                f'database {self.db_info_file} has {self._point_dim}')
        boxes = np.asarray(results.get('gt_bboxes_3d', np.zeros((0, 7), np.float32)))
        labels = np.asarray(results.get('gt_labels_3d', np.zeros(0, np.int64)))
        occupied = boxes[:, :7].astype(np.float64)
        pasted: List[Dict] = []
        for name, target in self.sample_groups.items():
            need = int(target) - int((labels == self.classes.index(name)).sum())
            if need <= 0 or not self._pools[name]:
                continue
            chosen = self._select(name, need, occupied)
            if chosen:
                occupied = np.concatenate(
                    [occupied, np.array([o['box'][:7] for o in chosen], dtype=np.float64)])
                pasted.extend(chosen)
        results['num_pasted_objects'] = len(pasted)
        if not pasted:
            return results
        new_boxes = np.array([o['box'][:7] for o in pasted], dtype=np.float64)
        if self.remove_points_in_pasted_boxes:
            points = points[~points_in_boxes(points, new_boxes).any(axis=1)]
        new_points = [self._points_of(o) for o in pasted]
        results['points'] = np.concatenate([points] + new_points).astype(points.dtype, copy=False)
        new = dict(gt_bboxes_3d=new_boxes.astype(boxes.dtype if boxes.size else np.float32),
                   gt_labels_3d=np.array([self.classes.index(o['name']) for o in pasted],
                                         dtype=np.int64),
                   gt_difficulty=np.array([o.get('difficulty', -1) for o in pasted],
                                          dtype=np.int64),
                   gt_ignore_flags=np.zeros(len(pasted), dtype=bool))
        results.setdefault('gt_bboxes_3d', np.zeros((0, 7), np.float32))
        results.setdefault('gt_labels_3d', np.zeros(0, np.int64))
        for key in BOX_KEYS:
            if key in results:
                old = np.asarray(results[key])
                results[key] = np.concatenate([old, new[key].astype(old.dtype, copy=False)])
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(db_info_file={self.db_info_file!r}, '
                f'sample_groups={self.sample_groups}, classes={self.classes}, '
                f'min_points={self.min_points}, '
                f'remove_points_in_pasted_boxes={self.remove_points_in_pasted_boxes}, '
                f'max_trials={self.max_trials}, max_cached_points={self.max_cached_points})')


def _collides(box: np.ndarray, others: np.ndarray) -> bool:
    """Whether (1, 7) ``box`` overlaps any of ``others`` in BEV (rotated IoU > 0)."""
    return bool(overlaps_bev(torch.from_numpy(box),
                             torch.from_numpy(np.ascontiguousarray(others))).any())
