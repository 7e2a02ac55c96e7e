"""Count the boxes of a point-cloud info file and the LiDAR points inside each box.

    python tools/analysis/dataset_stats_3d.py data/kitti/kitti_infos_train.json \
        [--json stats.json] [--data-root DIR] [--point-dim 4] [--empty-warn 0.2]

This is the quickest way to see that a conversion to ssl_det's info format is right: a box
in the right frame with the right yaw holds the object's points (a KITTI car within 20 m
holds hundreds), while a box left in camera coordinates, with a bottom- instead of a centre-z,
or with a yaw off by 90° holds few or none. So the table gives, per class, the number of
boxes, the min/median/max number of points inside a box and the boxes with no point at all,
and a warning line names every class whose fraction of empty boxes exceeds ``--empty-warn``
(far or occluded objects make a few empty boxes normal). When the info file records
``num_lidar_pts`` the count here is compared with it.

Points inside a box: :func:`ssl_det.structures.points_in_boxes` (faces included, no margin),
on each frame's points read once (frames without boxes are not read). ``--json`` writes
``{"info_file", "frames", "classes": {name: {"boxes", "points_min", "points_median",
"points_max", "empty"}}, "boxes": [{"frame", "name", "points"}, ...], "warnings": [...]}``
with ``boxes`` in the info file's order (frames, then instances); a box entry also carries
``num_lidar_pts`` when the info file has it. A class without boxes has null min/median/max.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional

import numpy as np

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from ssl_det.datasets.point_cloud_io import (PointCloudDataError, load_info_file,  # noqa: E402
                                             load_points, resolve_path)
from ssl_det.structures import check_boxes3d, points_in_boxes  # noqa: E402

# Points x boxes handled at once by points_in_boxes (its float64 temporaries scale with it).
_CHUNK_ELEMENTS = 2_000_000


def count_points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(M,) int64: the number of ``points`` inside each box, in chunks of boxes."""
    counts = np.zeros(len(boxes), dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // max(len(points), 1))
    for start in range(0, len(boxes), step):
        counts[start:start + step] = points_in_boxes(points, boxes[start:start + step]).sum(0)
    return counts


def frame_boxes(frame: Dict, index: int, info_file: str):
    """A frame's id, boxes (M, 7), class names and recorded ``num_lidar_pts`` (or None each),
    checked, with errors that name the file, frame and instance."""
    frame_id = str(frame.get('frame_id', index))
    boxes, names, recorded = [], [], []
    for i, inst in enumerate(frame.get('instances') or []):
        missing = [key for key in ('bbox_3d', 'label_name') if key not in inst]
        if missing:
            raise PointCloudDataError(f'{info_file} (frame {frame_id}): instance #{i} has no '
                                      f'{", ".join(missing)}')
        box = np.asarray(inst['bbox_3d'], dtype=np.float64).reshape(-1)
        if box.shape[0] < 7:
            raise PointCloudDataError(f'{info_file} (frame {frame_id}): instance #{i} '
                                      f'bbox_3d needs 7 values (x, y, z, dx, dy, dz, yaw), '
                                      f'got {box.tolist()}')
        boxes.append(box[:7])
        names.append(str(inst['label_name']))
        recorded.append(inst.get('num_lidar_pts'))
    boxes = np.stack(boxes) if boxes else np.zeros((0, 7))
    check_boxes3d(boxes, f'{info_file} (frame {frame_id})')
    return frame_id, boxes, names, recorded


def dataset_stats_3d(info_file: str, data_root: Optional[str] = None,
                     point_dim: Optional[int] = None, empty_warn: float = 0.2) -> Dict:
    """Frames, boxes per class and points per box of an info file (see the module doc).

    Args:
        info_file: the ``.json``/``.pkl`` info file (:mod:`ssl_det.datasets.point_cloud_io`).
        data_root: folder that relative ``lidar_path`` values are under; default the info
            file's folder.
        point_dim: values per point in ``.bin`` files; default each frame's
            ``num_point_features``, else ``metainfo.point_dim``, else 4.
        empty_warn: warn for a class whose fraction of empty boxes exceeds this.

    Returns:
        dict: the ``--json`` structure, with ``warnings`` (one line each).
    """
    info = load_info_file(info_file)
    meta = info['metainfo']
    known = [str(c) for c in meta.get('classes', [])]
    entries: List[Dict] = []
    for index, frame in enumerate(info['data_list']):
        frame_id, boxes, names, recorded = frame_boxes(frame, index, info_file)
        if not len(boxes):
            continue
        if 'lidar_path' not in frame:
            raise PointCloudDataError(f'{info_file} (frame {frame_id}): no lidar_path')
        dim = point_dim or int(frame.get('num_point_features') or meta.get('point_dim') or 4)
        points = load_points(resolve_path(frame['lidar_path'], info_file, data_root), dim,
                             frame_id)
        for name, count, pts in zip(names, count_points_in_boxes(points, boxes), recorded):
            entry = dict(frame=frame_id, name=name, points=int(count))
            if pts is not None:
                entry['num_lidar_pts'] = int(pts)
            entries.append(entry)

    names = known + sorted({e['name'] for e in entries} - set(known))
    classes, warnings = {}, []
    for name in names:
        counts = np.array([e['points'] for e in entries if e['name'] == name], dtype=np.int64)
        empty = int((counts == 0).sum())
        classes[name] = dict(
            boxes=len(counts),
            points_min=int(counts.min()) if len(counts) else None,
            points_median=float(np.median(counts)) if len(counts) else None,
            points_max=int(counts.max()) if len(counts) else None,
            empty=empty)
        if name not in known:
            warnings.append(f'class {name!r} ({len(counts)} boxes) is not in '
                            f'metainfo.classes {known}')
        if len(counts) and empty / len(counts) > empty_warn:
            warnings.append(
                f'{empty} of {len(counts)} {name} boxes ({100 * empty / len(counts):.0f}%) '
                'hold no point: suspect boxes in the wrong frame (camera instead of LiDAR), '
                'a bottom- instead of a centre-z, or a yaw error; look at a frame with '
                'tools/analysis/show_3d.py')
    with_recorded = [e for e in entries if 'num_lidar_pts' in e]
    differ = sum(e['num_lidar_pts'] != e['points'] for e in with_recorded)
    if differ:
        warnings.append(f'{differ} of {len(with_recorded)} boxes hold a different number of '
                        'points than their num_lidar_pts in the info file')
    return dict(info_file=info_file, frames=len(info['data_list']), classes=classes,
                boxes=entries, warnings=warnings)


def format_table(stats: Dict) -> str:
    """The printed report: totals, one row per class, then the warnings."""
    lines = [f'info file: {stats["info_file"]}',
             f'frames: {stats["frames"]}   boxes: {len(stats["boxes"])}',
             f'{"class":<16}{"boxes":>8}{"pts min":>10}{"median":>10}{"max":>10}{"empty":>16}']
    for name, c in stats['classes'].items():
        if c['boxes']:
            empty = f'{c["empty"]} ({100 * c["empty"] / c["boxes"]:.1f}%)'
            lines.append(f'{name:<16}{c["boxes"]:>8}{c["points_min"]:>10}'
                         f'{c["points_median"]:>10.1f}{c["points_max"]:>10}{empty:>16}')
        else:
            lines.append(f'{name:<16}{0:>8}{"-":>10}{"-":>10}{"-":>10}{"-":>16}')
    lines += [f'WARNING: {w}' for w in stats['warnings']]
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('info_file', help='point-cloud info file (.json or .pkl)')
    parser.add_argument('--json', dest='json_out', help='also write the stats to this file')
    parser.add_argument('--data-root', help='folder of relative lidar_path values '
                        '(default: the info file\'s folder)')
    parser.add_argument('--point-dim', type=int, default=None,
                        help='values per point in .bin files (default: the info file\'s '
                        'num_point_features / metainfo.point_dim, else 4)')
    parser.add_argument('--empty-warn', type=float, default=0.2,
                        help='warn when a class has more than this fraction of empty boxes')
    return parser.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    try:
        stats = dataset_stats_3d(args.info_file, args.data_root, args.point_dim,
                                 args.empty_warn)
    except (PointCloudDataError, ValueError) as exc:
        sys.exit(f'dataset_stats_3d: error: {exc}')
    print(format_table(stats))
    if args.json_out:
        os.makedirs(osp.dirname(osp.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, 'w') as f:
            json.dump(stats, f, indent=1)
        print(f'stats written to {args.json_out}')
    return stats


if __name__ == '__main__':
    main()
