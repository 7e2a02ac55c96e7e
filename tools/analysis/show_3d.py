"""Picture one frame of a point-cloud info file with its ground truth and predictions.

    python tools/analysis/show_3d.py data/demo3d/infos_val.json --index 0 \
        [--pred results.pkl --score-thr 0.3] [--out-dir work_dirs/show_3d] [--perspective]

Writes ``<frame>_bev.png`` (bird's-eye view: ground truth green, predictions in a colour per
class with their score, a tick from each box's centre to its front face), ``<frame>.ply``
(points and box edges, for MeshLab / CloudCompare / open3d) and, with ``--perspective`` and
a working open3d renderer, ``<frame>_perspective.png``; see :mod:`ssl_det.visualization.bev`.
When the renderer cannot start (no GL/Vulkan driver) the tool says why and the other two
files are still written.

**Prediction files** (``.json`` or ``.pkl``; boxes in ssl_det's convention, (K, 7)
``x, y, z (centre), dx, dy, dz, yaw``), either

1. a dict by frame id: ``{"000000": {"bboxes_3d": [[...7...], ...], "scores_3d": [...],
   "labels_3d": [...]}, ...}``, or
2. a list of data samples as ``mmengine.dump`` writes them from a test run: each a dict (or
   a :class:`~ssl_det.structures.PointCloudDataSample`) with ``pred_instances_3d`` (the same
   three keys; tensors, arrays or lists) and the metainfo ``frame_id`` (top level, as
   ``BaseDataElement.to_dict`` writes it, or under ``metainfo``).

``labels_3d`` index ``metainfo.classes`` of the info file.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from ssl_det.datasets.point_cloud_io import (  # noqa: E402
    PointCloudDataError, load_info_file, load_json_or_pickle, load_points, resolve_path)
from ssl_det.visualization import (render_perspective_png, save_bev_png,  # noqa: E402
                                   write_scene_ply)
from tools.analysis.dataset_stats_3d import frame_boxes  # noqa: E402

PRED_KEYS = ('bboxes_3d', 'scores_3d', 'labels_3d')


def _array(value) -> np.ndarray:
    value = getattr(value, 'tensor', value)  # a boxes object wrapping its tensor
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _pred_arrays(pred, where: str) -> Dict[str, np.ndarray]:
    missing = [key for key in PRED_KEYS if pred is None or pred.get(key) is None]
    if missing:
        raise PointCloudDataError(f'{where}: predictions lack {", ".join(missing)} '
                                  f'(need {", ".join(PRED_KEYS)})')
    out = dict(bboxes_3d=_array(pred.get('bboxes_3d')).astype(np.float64).reshape(-1, 7),
               scores_3d=_array(pred.get('scores_3d')).astype(np.float64).reshape(-1),
               labels_3d=_array(pred.get('labels_3d')).astype(np.int64).reshape(-1))
    sizes = {key: len(value) for key, value in out.items()}
    if len(set(sizes.values())) > 1:
        raise PointCloudDataError(f'{where}: prediction lengths differ: {sizes}')
    return out


def load_predictions(path: str) -> Dict[str, Dict[str, np.ndarray]]:
    """Read a prediction file (either form in the module doc) into ``{frame_id: arrays}``."""
    data = load_json_or_pickle(path, 'prediction')
    if isinstance(data, dict):
        return {str(fid): _pred_arrays(pred, f'{path} (frame {fid})')
                for fid, pred in data.items()}
    if not isinstance(data, (list, tuple)):
        raise PointCloudDataError(f'{path}: expected a dict by frame id or a list of data '
                                  f'samples, got {type(data).__name__}')
    preds = {}
    for i, sample in enumerate(data):
        meta = sample.get('metainfo') or {}
        fid = sample.get('frame_id', meta.get('frame_id'))
        if fid is None:
            raise PointCloudDataError(f'{path}: data sample #{i} has no frame_id (top level '
                                      'or in metainfo)')
        if str(fid) in preds:
            raise PointCloudDataError(f'{path}: frame {fid} appears twice (sample #{i})')
        preds[str(fid)] = _pred_arrays(sample.get('pred_instances_3d'),
                                       f'{path} (sample #{i}, frame {fid})')
    return preds


def _select_frame(info: Dict, info_file: str, frame_id: Optional[str],
                  index: Optional[int]) -> Tuple[int, Dict]:
    """``(position, frame)`` of the frame with ``frame_id``, else at ``index`` (default 0)."""
    frames = info['data_list']
    if frame_id is not None:
        for i, frame in enumerate(frames):
            if str(frame.get('frame_id')) == str(frame_id):
                return i, frame
        some = ', '.join(str(f.get('frame_id')) for f in frames[:5])
        raise PointCloudDataError(f'{info_file}: no frame {frame_id!r} among its '
                                  f'{len(frames)} frames (first: {some})')
    index = 0 if index is None else index
    if not -len(frames) <= index < len(frames):
        raise PointCloudDataError(f'{info_file}: --index {index} is out of range for its '
                                  f'{len(frames)} frames')
    return index % len(frames), frames[index]


def show_frame(info_file: str, out_dir: str, frame_id: Optional[str] = None,
               index: Optional[int] = None, pred_file: Optional[str] = None,
               score_thr: float = 0.3, perspective: bool = False,
               data_root: Optional[str] = None, point_dim: Optional[int] = None,
               point_cloud_range: Optional[Sequence[float]] = None) -> Dict:
    """Write the pictures of one frame (``frame_id``, else ``index``, else the first).

    ``point_cloud_range`` defaults to ``metainfo.point_cloud_range`` when the info file has
    one, else the scene's extent. Returns ``{'frame', 'bev', 'ply', 'perspective'
    (RenderResult or None), 'num_pred', 'num_pred_drawn', 'messages'}``.
    """
    info = load_info_file(info_file)
    meta = info['metainfo']
    classes = [str(c) for c in meta.get('classes', [])]
    position, frame = _select_frame(info, info_file, frame_id, index)
    fid, gt_boxes, names, _ = frame_boxes(frame, position, info_file)
    if 'lidar_path' not in frame:
        raise PointCloudDataError(f'{info_file} (frame {fid}): no lidar_path')
    dim = point_dim or int(frame.get('num_point_features') or meta.get('point_dim') or 4)
    points = load_points(resolve_path(frame['lidar_path'], info_file, data_root), dim, fid)
    gt_labels = np.array([classes.index(n) if n in classes else -1 for n in names], np.int64)
    messages = [f'frame {fid}: {len(points)} points, {len(gt_boxes)} ground-truth boxes']

    pred, num_pred = None, 0
    if pred_file is not None:
        preds = load_predictions(pred_file)
        if fid in preds:
            pred = preds[fid]
            num_pred = len(pred['scores_3d'])
            keep = pred['scores_3d'] >= score_thr
            pred = {key: value[keep] for key, value in pred.items()}
            messages.append(f'predictions: {int(keep.sum())} of {num_pred} drawn '
                            f'(score >= {score_thr:g})')
        else:
            messages.append(f'WARNING: {pred_file} has no predictions for frame {fid} (it '
                            f'has {len(preds)} frames); drawing the ground truth only')
    rng = point_cloud_range if point_cloud_range is not None else meta.get('point_cloud_range')
    scene = dict(gt_boxes=gt_boxes, gt_labels=gt_labels, classes=classes,
                 pred_boxes=None if pred is None else pred['bboxes_3d'],
                 pred_labels=None if pred is None else pred['labels_3d'],
                 pred_scores=None if pred is None else pred['scores_3d'])
    stem = osp.join(out_dir, fid.replace(os.sep, '_'))
    out = dict(frame=fid, num_pred=num_pred,
               num_pred_drawn=0 if pred is None else len(pred['scores_3d']),
               bev=save_bev_png(f'{stem}_bev.png', points, point_cloud_range=rng,
                                title=f'{osp.basename(info_file)}  frame {fid}', **scene),
               ply=write_scene_ply(f'{stem}.ply', points, **scene), perspective=None)
    if perspective:
        result = render_perspective_png(f'{stem}_perspective.png', points,
                                        point_cloud_range=rng, **scene)
        out['perspective'] = result
        messages.append(f'perspective: written to {result.reason}' if result else
                        f'perspective: open3d could not render ({result.reason}); the BEV PNG '
                        'and the .ply are written')
    out['messages'] = messages
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('info_file', help='point-cloud info file (.json or .pkl)')
    which = parser.add_mutually_exclusive_group()
    which.add_argument('--frame', help='frame_id to show')
    which.add_argument('--index', type=int, help='position of the frame in data_list '
                       '(default 0)')
    parser.add_argument('--pred', help='predictions (.json/.pkl, see the module doc)')
    parser.add_argument('--out-dir', default='work_dirs/show_3d')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw predictions with at least this score')
    parser.add_argument('--perspective', action='store_true',
                        help='also render a perspective PNG with open3d (needs GL/Vulkan)')
    parser.add_argument('--data-root', help='folder of relative lidar_path values')
    parser.add_argument('--point-dim', type=int, default=None,
                        help='values per point in .bin files (default: from the info file)')
    parser.add_argument('--range', type=float, nargs=6, default=None,
                        metavar=('X0', 'Y0', 'Z0', 'X1', 'Y1', 'Z1'),
                        help='BEV range in metres (default: metainfo.point_cloud_range, '
                        'else the scene)')
    return parser.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    try:
        out = show_frame(args.info_file, args.out_dir, args.frame, args.index, args.pred,
                         args.score_thr, args.perspective, args.data_root, args.point_dim,
                         args.range)
    except (PointCloudDataError, ValueError) as exc:
        sys.exit(f'show_3d: error: {exc}')
    print('\n'.join(out['messages']))
    print(f'{out["bev"]}\n{out["ply"]}')
    return out


if __name__ == '__main__':
    main()
