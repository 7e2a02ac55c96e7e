"""``Box3DAPMetric``: KITTI-style BEV and 3D AP of rotated 3D boxes as an mmengine metric.

The maths lives in :mod:`ssl_det.evaluation.ap3d`; this class gathers one frame per data
sample, turns the config's class-name thresholds into a matrix and names the results.
"""
import logging
import re
from numbers import Real
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement

from ssl_det.registry import METRICS
from .ap3d import BOX_TYPES, RECALL_POINTS, class_mean, eval_ap3d

ThresholdSet = Union[float, Mapping[str, float]]

DEFAULT_IOU_THRESHOLDS = (dict(Car=0.7, Pedestrian=0.5, Cyclist=0.5, default=0.5),
                          dict(Car=0.5, Pedestrian=0.25, Cyclist=0.25, default=0.25))
DIFFICULTY_NAMES = {0: 'easy', 1: 'moderate', 2: 'hard'}


def _numpy(value, dtype) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _has_fields(instances) -> bool:
    if isinstance(instances, BaseDataElement):
        return len(instances.keys()) > 0
    return bool(instances)


def _thr_name(thr: float) -> str:
    return f'{thr:.2f}' if abs(round(thr, 2) - thr) < 1e-12 else f'{thr:g}'


@METRICS.register_module()
class Box3DAPMetric(BaseMetric):
    """BEV and 3D average precision per class, threshold set, difficulty and distance range.

    Matching, ignored boxes, interpolation and the NaN rule for a class without ground truth
    are those of :mod:`ssl_det.evaluation.ap3d`. Values are in [0, 1]. Keys (before mmengine
    adds the prefix, ``'ap3d'`` unless ``prefix`` is given, e.g. ``save_best='ap3d/mAP'``):

    - ``'{box_type}/{class}@{iou:.2f}/R{11|40}{suffix}'``, e.g. ``'3d/Car@0.70/R40'``;
    - ``'{box_type}/mAP@set{s}/R{11|40}{suffix}'``: mean over the classes with ground truth
      at threshold set ``s`` (its index in ``iou_thresholds``);
    - ``'mAP'``: the value of the ``primary`` key.

    ``suffix`` is empty for the AP over every box (all difficulties, all distances), which is
    always computed; with ``difficulties`` it may be ``'/easy'``, ``'/moderate'``, ``'/hard'``
    (``'/level{L}'`` beyond 2), with ``distance_ranges`` ``'/0-20m'`` etc., or both
    (``'/moderate/0-20m'``).

    Each data sample (a dict, as mmengine passes ``data_sample.to_dict()``, or a
    :class:`~ssl_det.structures.PointCloudDataSample`) needs ``pred_instances_3d``
    (``bboxes_3d``, ``scores_3d``, ``labels_3d``) and ``gt_instances_3d`` (``bboxes_3d``,
    ``labels_3d``, and ``difficulty`` when ``difficulties`` is set); boxes of an optional
    ``ignored_instances_3d`` count as ignored ground truth.

    Args:
        iou_thresholds: threshold sets; each is a float for every class or a dict
            class name -> IoU, whose optional ``'default'`` entry serves the classes it does not
            name. Defaults to KITTI's strict (Car 0.7, Pedestrian/Cyclist 0.5, others 0.5) and
            loose (0.5, 0.25, others 0.25) sets.
        box_types: any of ``'bev'``, ``'3d'``. Defaults to both.
        recall_points: any of 40 (R40) and 11 (R11). Defaults to ``(40, 11)``.
        difficulties: difficulty levels evaluated besides every box, e.g. ``(0, 1, 2)`` for
            KITTI's easy/moderate/hard; level ``L`` counts boxes with ``0 <= difficulty <= L``.
            Defaults to None (no per-difficulty keys).
        distance_ranges: ``[(lo, hi), ...]`` metre ranges of the BEV centre distance evaluated
            besides all distances. Defaults to None.
        primary: the key reported as ``'mAP'``. Defaults to ``'3d/mAP@set0/R40'`` (the first
            box type and recall count given when 3d or 40 is not evaluated).
        collect_device: ``'cpu'`` or ``'gpu'``, where results are gathered. Defaults to
            ``'cpu'``.
        prefix: key prefix. Defaults to ``'ap3d'``.
        collect_dir: shared folder for ``collect_device='cpu'``. Defaults to None.
    """
    default_prefix: Optional[str] = 'ap3d'

    def __init__(self, iou_thresholds: Sequence[ThresholdSet] = DEFAULT_IOU_THRESHOLDS,
                 box_types: Sequence[str] = BOX_TYPES, recall_points: Sequence[int] = (40, 11),
                 difficulties: Optional[Sequence[int]] = None,
                 distance_ranges: Optional[Sequence[Tuple[float, float]]] = None,
                 primary: Optional[str] = None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None, collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if isinstance(iou_thresholds, (Real, Mapping)):
            raise TypeError('Box3DAPMetric: iou_thresholds is a list of threshold sets, e.g. '
                            f'[0.5] or [dict(Car=0.7, default=0.5)], got {iou_thresholds!r}')
        self.iou_thresholds = [self._check_set(s) for s in iou_thresholds]
        if not self.iou_thresholds:
            raise ValueError('Box3DAPMetric: iou_thresholds needs at least one set')
        self.box_types, self.recall_points = tuple(box_types), tuple(recall_points)
        for name, values, allowed in (('box_types', self.box_types, BOX_TYPES),
                                      ('recall_points', self.recall_points, RECALL_POINTS)):
            if not values or any(v not in allowed for v in values) or len(set(values)) < len(
                    values):
                raise ValueError(f'Box3DAPMetric: {name} must be distinct values from '
                                 f'{allowed}, got {values!r}')
        self.difficulties = tuple(difficulties or ())
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 0
               for d in self.difficulties) or len(set(self.difficulties)) < len(
                   self.difficulties):
            raise ValueError('Box3DAPMetric: difficulties must be distinct ints >= 0 (KITTI: 0 '
                             f'easy, 1 moderate, 2 hard), got {difficulties!r}')
        self.distance_ranges = [tuple(float(v) for v in r) for r in distance_ranges or ()]
        if any(len(r) != 2 or not 0 <= r[0] < r[1] for r in self.distance_ranges):
            raise ValueError('Box3DAPMetric: distance_ranges must be (lo, hi) metres with '
                             f'0 <= lo < hi, got {distance_ranges!r}')
        if primary is None:
            box = '3d' if '3d' in self.box_types else self.box_types[0]
            points = 40 if 40 in self.recall_points else self.recall_points[0]
            primary = f'{box}/mAP@set0/R{points}'
        if not self._valid_key(primary):
            raise ValueError(f'Box3DAPMetric: primary={primary!r} is not a key this metric '
                             f'computes; class means are e.g. {self._mean_keys()[:4]}')
        self.primary = primary

    # ------------------------------------------------------------------------------ keys
    @staticmethod
    def _check_set(thresholds: ThresholdSet) -> ThresholdSet:
        values = list(thresholds.values()) if isinstance(thresholds, Mapping) else [thresholds]
        if not values or any(isinstance(v, bool) or not isinstance(v, Real) or not 0 < v <= 1
                             for v in values):
            raise ValueError('Box3DAPMetric: each threshold set is an IoU in (0, 1] or a dict '
                             f'class name -> IoU in (0, 1], got {thresholds!r}')
        return dict(thresholds) if isinstance(thresholds, Mapping) else float(thresholds)

    def _buckets(self) -> List[Tuple[Optional[int], Optional[Tuple[float, float]], str]]:
        """(difficulty, distance range, key suffix), the unfiltered bucket first."""
        out = []
        for d in (None, ) + self.difficulties:
            for r in [None] + self.distance_ranges:
                parts = ([] if d is None else [DIFFICULTY_NAMES.get(d, f'level{d}')]) + (
                    [] if r is None else [f'{r[0]:g}-{r[1]:g}m'])
                out.append((d, r, ''.join('/' + p for p in parts)))
        return out

    def _mean_keys(self) -> List[str]:
        return [f'{bt}/mAP@set{s}/R{p}{suffix}' for bt in self.box_types
                for s in range(len(self.iou_thresholds)) for p in self.recall_points
                for _, _, suffix in self._buckets()]

    def _valid_key(self, key) -> bool:
        """A mean key, or shaped like a class key (classes are known only at evaluation)."""
        if not isinstance(key, str):
            return False
        if key in self._mean_keys():
            return True
        tails = '|'.join(re.escape(f'/R{p}{suffix}') for p in self.recall_points
                         for _, _, suffix in self._buckets())
        heads = '|'.join(re.escape(bt) for bt in self.box_types)
        return re.fullmatch(rf'({heads})/[^/]+@[0-9.]+({tails})', key) is not None

    def threshold_matrix(self, classes: Sequence[str]) -> np.ndarray:
        """(num_sets, num_classes) IoU thresholds for ``classes``."""
        rows = []
        for s, thresholds in enumerate(self.iou_thresholds):
            if not isinstance(thresholds, dict):
                rows.append([thresholds] * len(classes))
                continue
            missing = [c for c in classes if c not in thresholds and 'default' not in thresholds]
            if missing:
                raise ValueError(f'Box3DAPMetric: iou_thresholds[{s}] has no IoU for classes '
                                 f"{missing}; name them or add a 'default' entry")
            rows.append([float(thresholds.get(c, thresholds.get('default'))) for c in classes])
        return np.array(rows, dtype=np.float64)

    # --------------------------------------------------------------------------- process
    def process(self, data_batch, data_samples: Sequence[Union[dict, BaseDataElement]]) -> None:
        """Keep each frame's boxes as CPU numpy arrays."""
        for sample in data_samples:
            if isinstance(sample, BaseDataElement):
                sample = sample.to_dict()
            frame = sample.get('frame_id', sample.get('sample_idx'))
            frame = f'#{len(self.results)}' if frame is None else str(frame)
            pred = self._instances(sample, 'pred_instances_3d', frame,
                                   ('bboxes_3d', 'scores_3d', 'labels_3d'))
            gt = self._instances(sample, 'gt_instances_3d', frame, ('bboxes_3d', 'labels_3d'))
            if self.difficulties and 'difficulty' not in gt:
                raise KeyError(f'Box3DAPMetric: frame {frame}: gt_instances_3d has no '
                               f'difficulty but difficulties={list(self.difficulties)}; keep '
                               'gt_difficulty in the val pipeline or set difficulties=None')
            gt['gt_ignore'] = np.zeros(len(gt['labels_3d']), bool)
            # mmdet-style packing leaves an empty element (no fields) when nothing is ignored.
            if _has_fields(sample.get('ignored_instances_3d')):
                ignored = self._instances(sample, 'ignored_instances_3d', frame,
                                          ('bboxes_3d', 'labels_3d'))
                for key in ('bboxes_3d', 'labels_3d', 'difficulty'):
                    if key in gt:
                        extra = ignored.get(key, np.full(len(ignored['labels_3d']), -1))
                        gt[key] = np.concatenate([gt[key], extra.astype(gt[key].dtype)])
                gt['gt_ignore'] = np.concatenate(
                    [gt['gt_ignore'], np.ones(len(ignored['labels_3d']), bool)])
            self._check_labels(frame, gt, pred)
            self.results.append(dict(frame_id=frame, gt=gt, pred=pred))

    def _check_labels(self, frame: str, gt: Dict, pred: Dict) -> None:
        """Fail on the frame, not after the whole evaluation, when the classes are known."""
        classes = (self.dataset_meta or {}).get('classes')
        for field, labels in (('gt_instances_3d', gt['labels_3d']),
                              ('pred_instances_3d', pred['labels_3d'])):
            if classes and len(labels) and not (0 <= labels.min() and labels.max() < len(
                    classes)):
                raise ValueError(f'Box3DAPMetric: frame {frame}: {field}.labels_3d must be in '
                                 f'[0, {len(classes)}) (dataset_meta classes {tuple(classes)}),'
                                 f' got {np.unique(labels).tolist()}')

    @staticmethod
    def _instances(sample: dict, field: str, frame: str, keys: Sequence[str]) -> Dict:
        instances = sample.get(field)
        if isinstance(instances, BaseDataElement):
            instances = instances.to_dict()
        if instances is None:
            raise KeyError(f'Box3DAPMetric: frame {frame} has no {field}; the metric needs '
                           'the model predictions and the ground truth (keep the annotations '
                           'in the val/test pipeline)')
        out = {}
        for key in tuple(keys) + ('difficulty', ):
            if key not in instances:
                if key == 'difficulty':
                    continue
                raise KeyError(f'Box3DAPMetric: frame {frame}: {field} has no {key!r}')
            dtype = np.float64 if key in ('bboxes_3d', 'scores_3d') else np.int64
            out[key] = _numpy(instances[key], dtype)
        if out['bboxes_3d'].size == 0:
            out['bboxes_3d'] = out['bboxes_3d'].reshape(0, 7)
        return out

    # --------------------------------------------------------------------------- compute
    def compute_metrics(self, results: list) -> Dict[str, float]:
        """AP keys (see the class docstring) and ``'mAP'``; logs a table."""
        classes = tuple((self.dataset_meta or {}).get('classes', ()))
        if not classes:
            raise ValueError("Box3DAPMetric: dataset_meta['classes'] is not set; the runner "
                             "sets it from the dataset's metainfo")
        buckets = self._buckets()
        thr = self.threshold_matrix(classes)
        gts = [dict(r['gt'], frame_id=r['frame_id']) for r in results]
        preds = [dict(r['pred'], frame_id=r['frame_id']) for r in results]
        res = eval_ap3d(gts, preds, len(classes), thr, self.box_types, self.recall_points,
                        [None] + list(self.difficulties), [None] + self.distance_ranges)
        metrics: Dict[str, float] = {}
        num_g = len(self.distance_ranges) + 1
        for bt, ap in res.ap.items():
            means = class_mean(ap)  # (S, D, G, P)
            for b, (_, _, suffix) in enumerate(buckets):
                d, g = divmod(b, num_g)
                for r, p in enumerate(self.recall_points):
                    for s in range(len(thr)):
                        for c, name in enumerate(classes):
                            key = f'{bt}/{name}@{_thr_name(thr[s, c])}/R{p}{suffix}'
                            metrics[key] = float(ap[s, c, d, g, r])
                        metrics[f'{bt}/mAP@set{s}/R{p}{suffix}'] = float(means[s, d, g, r])
        if self.primary not in metrics:
            raise KeyError(f'Box3DAPMetric: primary={self.primary!r} was not computed; '
                           f'class keys are e.g. {sorted(metrics)[:4]}')
        metrics['mAP'] = metrics[self.primary]
        self._log(classes, thr, res, metrics, results)
        return metrics

    def _log(self, classes, thr, res, metrics, results) -> None:
        num_ignored = sum(int(r['gt']['gt_ignore'].sum()) for r in results)
        print_log(f'Box3DAPMetric: {len(results)} frames; ground truth per class '
                  f'{dict(zip(classes, res.num_gt[:, 0, 0].tolist()))} (not counting '
                  f'{num_ignored} boxes marked ignored); predictions per class '
                  f'{dict(zip(classes, res.num_pred[:, 0].tolist()))}', logger='current')
        for s in range(len(thr)):
            pairs = ', '.join(f'{c} {_thr_name(t)}' for c, t in zip(classes, thr[s]))
            print_log(f'Box3DAPMetric: set{s} IoU thresholds: {pairs}', logger='current')
        num_g = len(self.distance_ranges) + 1
        for p in self.recall_points:
            header = ['class', 'filter', 'num_gt'] + [
                f'{bt} set{s}' for bt in self.box_types for s in range(len(thr))]
            rows = []
            for c, name in enumerate(list(classes) + ['mAP']):
                for b, (_, _, suffix) in enumerate(self._buckets()):
                    d, g = divmod(b, num_g)
                    count = str(res.num_gt[c, d, g]) if c < len(classes) else ''
                    rows.append([name, suffix.lstrip('/') or 'all', count] + [
                        self._cell(metrics, bt, s, name, thr, c, p, suffix)
                        for bt in self.box_types for s in range(len(thr))])
            print_log(f'Box3DAPMetric: AP R{p}\n' + _table(header, rows), logger='current')
        if np.isnan(metrics['mAP']):
            print_log(f'Box3DAPMetric: mAP ({self.primary}) is NaN: no class has ground truth '
                      'that counts under this filter', logger='current', level=logging.WARNING)

    @staticmethod
    def _cell(metrics, bt, s, name, thr, c, p, suffix) -> str:
        if c < len(thr[s]):
            value = metrics[f'{bt}/{name}@{_thr_name(thr[s, c])}/R{p}{suffix}']
        else:
            value = metrics[f'{bt}/mAP@set{s}/R{p}{suffix}']
        return 'n/a' if np.isnan(value) else f'{value:.4f}'


def _table(header: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = '+' + '+'.join('-' * (w + 2) for w in widths) + '+'
    fmt = '| ' + ' | '.join(f'{{:<{w}}}' for w in widths) + ' |'
    return '\n'.join([line, fmt.format(*header), line] + [fmt.format(*r) for r in rows] + [line])
