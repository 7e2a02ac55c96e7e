"""Labeled/unlabeled splits of a point-cloud info file, with the COCO splits' semantics.

As :mod:`ssl_det.datasets.coco_split`: a split holds exactly ``round(pct% × frames)``
labeled frames (halves round up) drawn without replacement; labeled and unlabeled files are
disjoint and together cover every frame; fold ``k`` uses its own permutation seeded by
``(seed, k)``; within a fold the splits are nested; reruns write identical files; the input
is only read. Names follow mmdet's: ``{stem}.{fold}@{pct}.json`` and
``{stem}.{fold}@{pct}-unlabeled.json`` (``.pkl`` for a ``.pkl`` input).

The unlabeled file keeps each frame with ``"instances": []`` (and no other label field) and
sets ``metainfo.unlabeled = true``. Relative ``lidar_path`` values are rewritten so they
resolve from the new file's folder (absolute ones stay as they are), unless a ``data_root``
is given: then they are relative to that root, which does not move, and are kept.
"""
import logging
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.logging import print_log

from .coco_split import fold_splits, num_labeled, split_names
from .point_cloud_io import (PointCloudDataError, dump_info_file, load_info_file,
                             resolve_path)

# Per-frame fields that carry annotations; none of them may reach an unlabeled file.
LABEL_KEYS: Tuple[str, ...] = ('instances', 'cam_instances', 'annos', 'ann_info', 'gt_boxes',
                               'gt_names')


def load_frames(info_file: str) -> Dict:
    """Read an info file to split; errors name the file, the frame and what is wrong."""
    info = load_info_file(info_file)
    frames = info['data_list']
    if not isinstance(frames, list) or not frames:
        raise PointCloudDataError(f'{info_file} has no frames (empty "data_list")')
    if info['metainfo'].get('unlabeled', False):
        raise PointCloudDataError(
            f'{info_file} is an unlabeled split (metainfo.unlabeled = true); split the '
            'labeled info file it came from instead')
    seen = set()
    for index, frame in enumerate(frames):
        if not isinstance(frame, dict) or 'frame_id' not in frame or 'lidar_path' not in frame:
            raise PointCloudDataError(
                f'{info_file}: data_list[{index}] needs "frame_id" and "lidar_path"')
        if str(frame['frame_id']) in seen:
            raise PointCloudDataError(
                f'{info_file}: duplicate frame_id {frame["frame_id"]!r} (data_list[{index}]); '
                'frame ids must be unique to split by frame')
        seen.add(str(frame['frame_id']))
    return info


def point_cloud_split_names(info_file: str, out_dir: str, fold: int,
                            percent: float) -> Tuple[str, str]:
    """The 2D tool's names (``{stem}.{fold}@{pct}.json``), keeping a ``.pkl`` input's type."""
    names = split_names(info_file, out_dir, fold, percent)
    if info_file.endswith(('.pkl', '.pickle')):
        names = tuple(osp.splitext(n)[0] + '.pkl' for n in names)
    return names


def _moved_path(path: str, info_file: str, out_file: str, data_root: Optional[str]) -> str:
    if osp.isabs(path) or data_root:
        return path
    return osp.relpath(resolve_path(path, info_file), osp.dirname(osp.abspath(out_file)))


def _subset(info: Dict, frame_ids: set, labeled: bool, info_file: str, out_file: str,
            data_root: Optional[str]) -> Dict:
    metainfo = dict(info['metainfo'])
    if not labeled:
        metainfo['unlabeled'] = True
    frames = []
    for frame in info['data_list']:
        if str(frame['frame_id']) not in frame_ids:
            continue
        out = {k: v for k, v in frame.items() if labeled or k not in LABEL_KEYS}
        if not labeled:
            out['instances'] = []
        out['lidar_path'] = _moved_path(frame['lidar_path'], info_file, out_file, data_root)
        frames.append(out)
    return dict(metainfo=metainfo, data_list=frames)


def _check_paths(info: Dict, info_file: str, data_root: Optional[str]) -> None:
    """Warn (with a count and an example) when point files do not resolve in the input."""
    missing = [f['lidar_path'] for f in info['data_list']
               if not osp.isfile(resolve_path(f['lidar_path'], info_file, data_root))]
    if missing:
        base = data_root or osp.dirname(osp.abspath(info_file))
        print_log(f'split_point_cloud: {len(missing)} of {len(info["data_list"])} point files '
                  f'of {info_file} do not exist relative to {base} (e.g. {missing[0]!r}); '
                  'the split files point where the input does', logger='current',
                  level=logging.WARNING)


def split_point_cloud(info_file: str, percents: Sequence[float], folds: int, out_dir: str,
                      seed: int = 1, data_root: Optional[str] = None) -> List[Tuple[str, str]]:
    """Write labeled/unlabeled info files for every fold (from 1) and percentage.

    Args:
        info_file: the info file (``.json``/``.pkl``) to split; it is only read.
        percents: labeled percentages, each in (0, 100); fractions such as 0.5 allowed.
        folds: number of folds; fold ``k`` uses its own permutation seeded by ``(seed, k)``.
        out_dir: where the files go (created if missing).
        seed: base seed. Default: 1.
        data_root: set when the frames' relative ``lidar_path`` values are relative to a data
            root rather than to the info file's folder; they are then kept unchanged.
            Default: None.

    Returns:
        ``[(labeled_file, unlabeled_file), ...]`` in fold, then percent order.
    """
    if folds < 1:
        raise ValueError(f'folds must be >= 1, got {folds}')
    info = load_frames(info_file)
    _check_paths(info, info_file, data_root)
    ids = np.array(sorted(str(f['frame_id']) for f in info['data_list']))
    try:
        counts = [num_labeled(len(ids), p) for p in percents]
    except ValueError as err:
        raise ValueError(f'{info_file}: {str(err).replace("images", "frames")}') from None
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for fold, percent, labeled, unlabeled in fold_splits(ids, percents, counts, folds, seed):
        names = point_cloud_split_names(info_file, out_dir, fold, percent)
        for path, frame_ids, is_labeled in zip(names, (labeled, unlabeled), (True, False)):
            if osp.abspath(path) == osp.abspath(info_file):
                raise ValueError(f'refusing to overwrite the input file {info_file}')
            dump_info_file(_subset(info, frame_ids, is_labeled, info_file, path, data_root),
                           path)
        written.append(names)
    return written
