"""A LiDAR detection dataset over ssl_det info files (or mmdet3d 1.x info files), with errors
that name the file, the frame and the fix."""
import os.path as osp
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from ssl_det.registry import DATASETS
from ssl_det.structures import check_boxes3d
from .mmdet3d_infos import (convert_mmdet3d_info, default_cam_key, is_mmdet3d_info,
                            mmdet3d_classes, mmdet3d_label_names, resolve_box_frame)
from .point_cloud_io import INFO_CONVENTION, PointCloudDataError, load_info_file, resolve_path
from .unreadable import UNREADABLE_MODES, SkipUnreadableMixin

OTHER_CLASSES = ('error', 'drop')


@DATASETS.register_module()
class PointCloudDataset(SkipUnreadableMixin, BaseDataset):
    """Frames of LiDAR points with 3D boxes, from one info file.

    The info file is ssl_det's format (:mod:`ssl_det.datasets.point_cloud_io`) or mmdet3d
    1.x's (:mod:`ssl_det.datasets.mmdet3d_infos`; told apart by its ``categories`` /
    ``lidar_points`` keys, boxes converted to ssl_det's convention on loading). Each frame
    becomes::

        lidar_path (str, absolute), frame_id (str), sample_idx (int: the frame's index in the
        dataset, as mmengine sets it), num_point_features (int),
        gt_bboxes_3d float32 (M, 7) (ssl_det LiDAR boxes), gt_labels_3d int64 (M,)
        (index into metainfo['classes']), gt_difficulty int64 (M,) (0 easy, 1 moderate,
        2 hard, -1 unknown), calib (dict of arrays, when the file has one),
        eval_ann_info (test_mode only: copies of the three box arrays)

    Points are read by the pipeline (``LoadPointsFromFile``), not here.

    Args:
        ann_file (str): The info file (``.json`` / ``.pkl``); relative paths are joined to
            ``data_root`` as mmengine does.
        data_root (str): Root of ``ann_file`` (as in mmengine) and, for mmdet3d info files
            or with ``data_prefix['pts']`` set, of the point paths. ssl_det info files'
            relative point paths are relative to the info file's own folder.
        data_prefix (dict): ``pts``: a folder put before each frame's ``lidar_path``
            (mmdet3d's KITTI configs use ``'training/velodyne_reduced'``). Defaults to
            ``dict(pts='')``.
        pipeline (list): Transforms. Defaults to ``[]``.
        metainfo (dict, optional): ``classes`` here overrides the file's: it selects and
            orders the classes (labels are indices into it). Other keys are added.
        test_mode (bool): Adds ``eval_ann_info`` and never drops frames. Defaults to False.
        other_classes (str): A box whose class is not in ``classes``: ``'error'`` raises,
            naming the file, frame and class; ``'drop'`` drops it and logs one line with
            the counts per class. Defaults to ``'error'``.
        filter_empty_gt (bool): Outside test mode, drop frames left without boxes (counted
            in the log). Defaults to False.
        box_frame (str): mmdet3d infos only: what ``bbox_3d`` means, ``'auto'`` (from
            ``metainfo['dataset']``: KITTI -> camera), ``'camera'``, ``'lidar'`` (centre z,
            nuScenes style) or ``'lidar_bottom'``. Defaults to ``'auto'``.
        cam_key (str, optional): mmdet3d infos only: the camera whose ``lidar2cam`` converts
            camera boxes. Defaults to ``'CAM2'`` (``'CAM_FRONT'`` for Waymo).
        point_dim (int, optional): Values per point in the point files; overrides the
            frames' ``num_point_features``. Default: each frame's value, else
            ``metainfo['point_dim']``, else 4.
        unreadable (str): A frame whose point file is missing or broken while training:
            ``'skip'`` takes the next frame instead (counted and named in the log by
            ``DataCheckHook``), ``'error'`` raises naming the file, ``'auto'`` skips in an
            unlabeled info file (``unlabeled: true``) and raises otherwise. Defaults to
            ``'auto'``.
        **kwargs: ``lazy_init``, ``max_refetch``, ``indices``, ``serialize_data`` as
            mmengine's ``BaseDataset``. With ``lazy_init=True`` ``metainfo`` holds the file's
            classes only after ``full_init()``.
    """

    METAINFO: dict = {}

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 data_prefix: Optional[Dict[str, str]] = None,
                 pipeline: Sequence = (),
                 metainfo: Optional[dict] = None,
                 test_mode: bool = False,
                 other_classes: str = 'error',
                 filter_empty_gt: bool = False,
                 box_frame: str = 'auto',
                 cam_key: Optional[str] = None,
                 point_dim: Optional[int] = None,
                 unreadable: str = 'auto',
                 **kwargs) -> None:
        if unreadable not in UNREADABLE_MODES:
            raise ValueError(f'unreadable must be one of {UNREADABLE_MODES}, got '
                             f'{unreadable!r}')
        self.unreadable = unreadable
        self.unlabeled = False
        if other_classes not in OTHER_CLASSES:
            raise ValueError(f'other_classes must be one of {OTHER_CLASSES}, got '
                             f'{other_classes!r}')
        if box_frame not in ('auto', 'camera', 'lidar', 'lidar_bottom'):
            raise ValueError("box_frame must be 'auto', 'camera', 'lidar' or 'lidar_bottom', "
                             f'got {box_frame!r}')
        if point_dim is not None and int(point_dim) < 3:
            raise ValueError(f'point_dim must be >= 3 (x, y, z first), got {point_dim}')
        data_prefix = dict(pts='') if data_prefix is None else dict(data_prefix)
        data_prefix.setdefault('pts', '')
        self.other_classes = other_classes
        self.filter_empty_gt = filter_empty_gt
        self.box_frame = box_frame
        self.cam_key = cam_key
        self.point_dim = None if point_dim is None else int(point_dim)
        # mmengine joins data_root into data_prefix; resolve_path joins data_root itself
        self._pts_prefix = data_prefix['pts']
        super().__init__(ann_file=ann_file, metainfo=metainfo, data_root=data_root,
                         data_prefix=data_prefix, pipeline=list(pipeline),
                         test_mode=test_mode, **kwargs)

    def is_unlabeled(self) -> bool:
        return self.unlabeled

    # ------------------------------------------------------------------ loading
    def load_data_list(self) -> List[dict]:
        """Read the info file once and parse every frame into arrays."""
        info = load_info_file(self.ann_file)
        raw_list = info['data_list']
        if not raw_list:
            raise PointCloudDataError(
                f'{self.ann_file} has an empty data_list (no frames); check the file or '
                'the converter that wrote it')
        file_meta = dict(info.get('metainfo') or {})
        mmdet3d = is_mmdet3d_info(info)
        self._mmdet3d_format = mmdet3d
        if mmdet3d:
            label_names = mmdet3d_label_names(file_meta, self.ann_file)
            file_meta['classes'] = mmdet3d_classes(file_meta, self.ann_file)
            box_frame = resolve_box_frame(self.box_frame, file_meta, self.ann_file)
            cam_key = self.cam_key or default_cam_key(file_meta)
        else:
            convention = file_meta.get('box_convention', INFO_CONVENTION)
            if convention != INFO_CONVENTION:
                raise PointCloudDataError(
                    f'{self.ann_file}: metainfo.box_convention is {convention!r}; this reader '
                    f'knows {INFO_CONVENTION!r} only')
        # 'unlabeled' describes the file, not the data: labeled and unlabeled splits of one
        # data set share their metainfo (ConcatDataset compares it); see self.unlabeled
        self.unlabeled = bool(file_meta.pop('unlabeled', False))
        for key, value in file_meta.items():
            self._metainfo.setdefault(key, value)
        classes = self._metainfo.get('classes')
        if not classes:
            raise PointCloudDataError(
                f'{self.ann_file}: no class names; write metainfo.classes in the file or '
                'pass metainfo=dict(classes=(...)) to the dataset')
        classes = tuple(str(c) for c in classes)
        if len(set(classes)) != len(classes):
            raise ValueError(f'{self.ann_file}: classes repeat a name: {classes}')
        self._metainfo['classes'] = classes
        self._class_index = {name: i for i, name in enumerate(classes)}
        self._dropped: Counter = Counter()

        ignored: Counter = Counter()
        data_list = []
        for idx in range(len(raw_list)):
            raw, raw_list[idx] = raw_list[idx], None  # free the per-box dicts as we go
            if mmdet3d:
                raw = convert_mmdet3d_info(raw, label_names, box_frame, cam_key,
                                           self.ann_file, ignored)
            raw.setdefault('sample_idx', idx)
            data_list.append(self.parse_data_info(raw))

        if ignored:
            print_log(f'{self.ann_file}: removed {ignored["label -1"]} boxes with '
                      "bbox_label_3d = -1 (DontCare / classes mmdet3d ignores)",
                      logger='current')
        if self._dropped:
            counts = ', '.join(f'{name}: {n}' for name, n in sorted(self._dropped.items()))
            print_log(f"{self.ann_file}: other_classes='drop' dropped "
                      f'{sum(self._dropped.values())} boxes of classes outside {classes} '
                      f'({counts})', logger='current')
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """One ssl_det-format frame -> the dict the pipeline starts from (class doc)."""
        raw = raw_data_info
        frame_id = raw.get('frame_id')
        if frame_id is None or not raw.get('lidar_path'):
            raise PointCloudDataError(
                f'{self.ann_file}: frame #{raw.get("sample_idx")} needs "frame_id" and '
                f'"lidar_path" (has {sorted(raw)})')
        frame_id = str(frame_id)
        where = f'{self.ann_file} frame {frame_id}'

        boxes, labels, difficulty = [], [], []
        for i, inst in enumerate(raw.get('instances') or []):
            name = inst.get('label_name')
            box = inst.get('bbox_3d')
            if name is None or box is None or len(box) < 7:
                raise PointCloudDataError(
                    f'{where}: instance #{i} needs "bbox_3d" (7 values) and "label_name"; '
                    f'got {inst}')
            label = self._class_index.get(name)
            if label is None:
                if self.other_classes == 'drop':
                    self._dropped[name] += 1
                    continue
                raise PointCloudDataError(
                    f'{where}: box #{i} has class {name!r}, which is not among the classes '
                    f"{tuple(self._class_index)}; pass other_classes='drop' to drop such "
                    'boxes (counted in the log) or add the class to metainfo.classes')
            boxes.append(box[:7])
            labels.append(label)
            diff = inst.get('difficulty')
            difficulty.append(-1 if diff is None else int(diff))
        gt_bboxes_3d = np.asarray(boxes, dtype=np.float32).reshape(-1, 7)
        check_boxes3d(gt_bboxes_3d, where=where)
        gt_labels_3d = np.asarray(labels, dtype=np.int64)
        gt_difficulty = np.asarray(difficulty, dtype=np.int64)

        path = str(raw['lidar_path'])
        if osp.isabs(path):
            pass
        elif self._pts_prefix or getattr(self, '_mmdet3d_format', False):
            # mmdet3d's layout: data_root / data_prefix['pts'] / lidar_path
            path = osp.join(self.data_root or '', self._pts_prefix, path)
        else:
            # ssl_det info files: relative to the info file's own folder, so that a split
            # file written elsewhere (tools/misc/split_point_cloud.py) still resolves
            path = resolve_path(path, self.ann_file)
        num_features = self.point_dim or raw.get('num_point_features') \
            or self._metainfo.get('point_dim') or 4
        data_info = dict(
            lidar_path=osp.abspath(path),
            frame_id=frame_id,
            sample_idx=int(raw['sample_idx']),
            num_point_features=int(num_features),
            gt_bboxes_3d=gt_bboxes_3d,
            gt_labels_3d=gt_labels_3d,
            gt_difficulty=gt_difficulty)
        if raw.get('calib'):
            data_info['calib'] = {k: np.asarray(v, dtype=np.float64)
                                  for k, v in raw['calib'].items()}
        if self.test_mode:
            data_info['eval_ann_info'] = dict(gt_bboxes_3d=gt_bboxes_3d.copy(),
                                              gt_labels_3d=gt_labels_3d.copy(),
                                              gt_difficulty=gt_difficulty.copy())
        return data_info

    def filter_data(self) -> List[dict]:
        """With ``filter_empty_gt`` (and not in test mode) drop frames without boxes."""
        if self.test_mode or not self.filter_empty_gt:
            return self.data_list
        kept = [d for d in self.data_list if len(d['gt_labels_3d'])]
        if len(kept) < len(self.data_list):
            print_log(f'{self.ann_file}: filter_empty_gt dropped '
                      f'{len(self.data_list) - len(kept)} of {len(self.data_list)} frames '
                      'without boxes', logger='current')
        if not kept:
            raise PointCloudDataError(
                f'{self.ann_file}: every frame lacks boxes of {self._metainfo["classes"]}, so '
                'filter_empty_gt=True leaves nothing; check classes / other_classes')
        return kept

    def get_cat_ids(self, idx: int) -> List[int]:
        """The labels present in frame ``idx`` (for class-aware samplers)."""
        return sorted(set(self.get_data_info(idx)['gt_labels_3d'].tolist()))
