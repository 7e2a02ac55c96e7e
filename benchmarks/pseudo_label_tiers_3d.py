"""How good is each tier of a 3D teacher's pseudo labels? Scored against the labels the
unlabeled demo scenes hide (the demo generator keeps every scene's boxes in ``train.json``).

For each checkpoint of a ``TeacherStudent3D`` run (its teacher and its adapted thresholds),
or of a supervised detector (stage 1: the teacher stage 2 would start from, with the config's
initial thresholds), the teacher labels unlabeled scenes as in training, but on the
unaugmented scene (weak and strong views are the scene itself, so the tiers are in the
scene's own frame). Per tier:

- ``precision``: boxes whose BEV IoU with a hidden box of their class reaches the metric's
  threshold for that class (the config's ``primary`` set: Car 0.5, Pedestrian / Cyclist
  0.25 on the demo);
- ``on_object``: boxes that overlap any hidden box at all (the rest lie on background or on
  the scenes' unlabeled clutter);
- ``recall`` (high, high + middle): hidden boxes found by a correct box of that tier;
- for the low tier, ``removed_points_on_objects``: the share of the points
  ``low='remove_points'`` would delete that lie inside hidden boxes (the rest are points
  of background and clutter: negatives the student no longer sees).

The same per class under ``per_class`` (a box's class is the teacher's label, a hidden
box's its own), and ``by_score``: per class, the teacher's boxes a scene scoring at or
above each of ``SCORE_STEPS`` and their precision, the curve a threshold picks a point of.
``--pool labeled`` scores the labeled scenes instead (the teacher trained on them, so how
far their curve lies from the unlabeled scenes' is how far a rule that sets thresholds from
labeled scenes would be off). And, free of the thresholds, ``teacher_ap``: the config's
validation metric (its primary AP) of all the teacher's boxes on those scenes against the
hidden labels: how well its scores rank right boxes above wrong ones. ``--cfg-options`` changes
the model before the checkpoint loads, e.g. ``model.teacher_views=[flip_y]`` scores a
teacher that also labels each scene mirrored (its fused scores are not on the same scale as
the thresholds it was trained with; ``teacher_ap`` compares the two teachers fairly).

Usage::

    python benchmarks/pseudo_label_tiers_3d.py \\
        work_dirs/label_efficiency_3d/seed*/hssda_pillar-center_demo3d_semi-10pct/iter_1000.pth
"""
import argparse
import copy
import json
import os
import os.path as osp
import statistics
import sys
from typing import Optional

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

TIERS = ('high', 'middle', 'low')
SCORE_STEPS = tuple(round(0.3 + 0.05 * k, 2) for k in range(13))  # 0.3 .. 0.9


def load_model(config: str, checkpoint: str, cfg_options: Optional[dict] = None):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    import ssl_det  # noqa: F401  (registers everything)
    from ssl_det.registry import MODELS
    init_default_scope('ssl_det')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    # the heading mask changes what a pseudo box teaches, not its tier: off, so that boxes
    # without yaw_norm (fused teacher views) are scored too
    cfg.model.min_yaw_norm = None
    model = MODELS.build(cfg.model)
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']
    # a plain detector's checkpoint (stage 1) fills teacher and student
    # (TeacherStudent._load_from_state_dict); the thresholds then start at the config's
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k.startswith(('teacher.', 'student.'))]
    if missing or result.unexpected_keys:
        raise ValueError(f'{checkpoint} does not fit the model of {config}: missing '
                         f'{missing[:3]}, unexpected {result.unexpected_keys[:3]}')
    model.thresholds_from = ('config' if any(k.startswith('pseudo_label.')
                                             for k in result.missing_keys) else 'checkpoint')
    model.eval()
    model.pseudo_label.update = lambda *args, **kwargs: None  # score, don't adapt
    if model.low == 'off':  # score the tier the config leaves off, as it would be
        print(f'{config}: low tier off; scoring it as low=remove_points would use it')
        model.low = 'remove_points'
    return cfg, model


POOLS = ('unlabeled', 'labeled', 'val')


def pool_scenes(cfg, limit: int, pool: str = 'unlabeled'):
    """The scenes of the unlabeled (or labeled) split's annotation file, loaded with their
    labels from ``train.json`` beside it (under that split's ``data_root``); ``'val'``: the
    validation scenes (``val_dataloader``'s file), which no run trains on."""
    from ssl_det.datasets.point_cloud_dataset import PointCloudDataset
    if pool not in POOLS:
        raise ValueError(f'pool must be one of {POOLS}, got {pool!r}')
    pipeline = [dict(type='LoadPointsFromFile'),
                dict(type='PointsRangeFilter', point_cloud_range=cfg.point_cloud_range),
                dict(type='PackPointCloudInputs',
                     meta_keys=('frame_id', 'lidar_aug_matrix', 'bev_shuffle'))]
    if pool == 'val':
        val = cfg.val_dataloader.dataset
        full = PointCloudDataset(data_root=osp.join(ROOT, val.data_root),
                                 ann_file=val.ann_file, metainfo=cfg.metainfo,
                                 pipeline=pipeline)
        return full, list(range(min(limit, len(full))))
    root = osp.join(ROOT, cfg[f'{pool}_dataset'].data_root)
    ann_file = cfg[f'{pool}_dataset'].ann_file
    pool = json.load(open(osp.join(root, ann_file)))['data_list']
    wanted = {d['frame_id'] for d in pool}
    full = PointCloudDataset(data_root=root, ann_file='train.json', metainfo=cfg.metainfo,
                             pipeline=pipeline)
    picked = [i for i in range(len(full)) if full.get_data_info(i)['frame_id'] in wanted]
    if not picked:
        raise SystemExit(f'no scene of {ann_file} is in train.json')
    return full, picked[:limit]


def match_thresholds(cfg) -> dict:
    """Per-class IoU of the config's primary threshold set (``3d/mAP@set{k}/R40``)."""
    primary = cfg.val_evaluator.get('primary', '3d/mAP@set0/R40')
    k = int(primary.split('@set')[1].split('/')[0])
    return {c: float(cfg.val_evaluator['iou_thresholds'][k][c])
            for c in cfg.metainfo['classes']}


def match(boxes, labels, gt_boxes, gt_labels, iou_thr):
    """``(iou, good)``, each (boxes, gt): the BEV IoU of every box with every labeled box,
    and whether it reaches the labeled box's class threshold ``iou_thr[class]`` with the
    same class (``match_boxes_bev``, as the mixing diagnostics match)."""
    from ssl_det.structures import match_boxes_bev
    return match_boxes_bev(boxes, labels, gt_boxes, gt_labels, iou_thr)


def score_checkpoint(config: str, checkpoint: str, limit: int,
                     cfg_options: Optional[dict] = None, pool: str = 'unlabeled') -> dict:
    from ssl_det.registry import METRICS
    from ssl_det.structures import points_in_boxes
    cfg, model = load_model(config, checkpoint, cfg_options)
    metric = METRICS.build(cfg.val_evaluator)
    metric.dataset_meta = dict(classes=tuple(cfg.metainfo['classes']))
    predicted = []
    teacher_predict = model.teacher_predict

    def recorded(inputs, samples):  # the teacher's boxes, as pseudo_instances gets them
        out = teacher_predict(inputs, samples)
        predicted.extend(out)
        return out
    model.teacher_predict = recorded
    dataset, picked = pool_scenes(cfg, limit, pool)
    classes = list(cfg.metainfo['classes'])
    thr = match_thresholds(cfg)
    per_class_thr = torch.tensor([thr[c] for c in classes], dtype=torch.float64)
    # counts per class (a box's class is the teacher's label; a hidden box's its own); the
    # totals are their sums

    def per_class(labels):
        return np.bincount(labels.numpy(), minlength=len(classes))[:len(classes)]
    by_class = {t: {k: np.zeros(len(classes), np.int64) for k in ('boxes', 'correct',
                                                                  'on_object')}
                for t in TIERS}
    found_by_class = {k: np.zeros(len(classes), np.int64) for k in ('high', 'high_middle')}
    gt_by_class = np.zeros(len(classes), np.int64)
    removed = dict(total=0, on_objects=0)
    all_scores, all_labels, all_correct = [], [], []  # every teacher box, for by_score
    for idx in picked:
        data = dataset[idx]
        points = data['inputs']['points']
        sample = data['data_samples']
        gt = sample.gt_instances_3d
        gt_boxes = torch.as_tensor(gt.bboxes_3d, dtype=torch.float64).reshape(-1, 7)
        gt_labels = torch.as_tensor(gt.labels_3d).long()
        gt_by_class += per_class(gt_labels)
        weak, strong = copy.deepcopy(sample), copy.deepcopy(sample)
        with torch.no_grad():
            _, samples, _ = model.pseudo_instances(dict(points=[points]), [weak],
                                                   dict(points=[points.clone()]), [strong])
        tiers = samples[0].pseudo_tiers
        pred = predicted.pop()
        metric.process({}, [dict(
            pred_instances_3d=dict(bboxes_3d=pred.bboxes_3d, scores_3d=pred.scores_3d,
                                   labels_3d=pred.labels_3d),
            gt_instances_3d=dict(bboxes_3d=gt_boxes.float(), labels_3d=gt_labels))])
        pred_labels = pred.labels_3d.long().cpu()
        correct = torch.zeros(len(pred_labels), dtype=torch.bool)
        if len(pred_labels) and len(gt_boxes):
            _, good = match(pred.bboxes_3d.double().cpu(), pred_labels, gt_boxes, gt_labels,
                            per_class_thr)
            correct = good.any(dim=1)
        all_scores.append(pred.scores_3d.float().cpu())
        all_labels.append(pred_labels)
        all_correct.append(correct)
        hit_by = {}
        for tier in TIERS:
            boxes = torch.as_tensor(tiers[tier], dtype=torch.float64).reshape(-1, 7)
            labels = torch.as_tensor(tiers[f'{tier}_labels']).long()
            by_class[tier]['boxes'] += per_class(labels)
            if not len(boxes) or not len(gt_boxes):
                hit_by[tier] = torch.zeros(len(gt_boxes), dtype=torch.bool)
                continue
            iou, good = match(boxes, labels, gt_boxes, gt_labels, per_class_thr)
            by_class[tier]['correct'] += per_class(labels[good.any(dim=1)])
            by_class[tier]['on_object'] += per_class(labels[(iou > 0).any(dim=1)])
            hit_by[tier] = good.any(dim=0)
            if tier == 'low' and model.low == 'remove_points':
                inside_low = points_in_boxes(points, boxes.float()).any(dim=1)
                on_object = points_in_boxes(points, gt_boxes.float()).any(dim=1)
                removed['total'] += int(inside_low.sum())
                removed['on_objects'] += int((inside_low & on_object).sum())
        if len(gt_boxes):
            found_by_class['high'] += per_class(gt_labels[hit_by['high']])
            found_by_class['high_middle'] += per_class(gt_labels[hit_by['high']
                                                                 | hit_by['middle']])

    def share(a, b):
        return a / b if b else None

    num_gt = int(gt_by_class.sum())

    scores, labels, correct = (torch.cat(all_scores), torch.cat(all_labels),
                               torch.cat(all_correct))

    def by_score(k):
        rows = {}
        for t in SCORE_STEPS:
            above = (labels == k) & (scores >= t)
            n = int(above.sum())
            rows[f'{t:.2f}'] = dict(per_scene=n / len(picked),
                                    precision=share(int(correct[above].sum()), n))
        return rows

    result = dict(checkpoint=osp.relpath(checkpoint, ROOT), pool=pool, scenes=len(picked),
                  hidden_boxes=num_gt, match_iou=thr,
                  thresholds=dict(high=model.pseudo_label.high_thr.tolist(),
                                  low=model.pseudo_label.low_thr.tolist(),
                                  low_score_thr=model.low_score_thr),
                  thresholds_from=model.thresholds_from, cfg_options=cfg_options or {},
                  teacher_ap=float(metric.compute_metrics(metric.results)['mAP']))
    for tier in TIERS:
        t = {k: int(v.sum()) for k, v in by_class[tier].items()}
        result[tier] = dict(boxes=t['boxes'], per_scene=t['boxes'] / len(picked),
                            precision=share(t['correct'], t['boxes']),
                            on_object=share(t['on_object'], t['boxes']))
    result['recall_high'] = share(int(found_by_class['high'].sum()), num_gt)
    result['recall_high_middle'] = share(int(found_by_class['high_middle'].sum()), num_gt)
    result['low']['removed_points_per_scene'] = removed['total'] / len(picked)
    result['low']['removed_points_on_objects'] = share(removed['on_objects'], removed['total'])
    result['per_class'] = {
        c: dict({tier: dict(boxes=int(by_class[tier]['boxes'][k]),
                            per_scene=int(by_class[tier]['boxes'][k]) / len(picked),
                            precision=share(int(by_class[tier]['correct'][k]),
                                            int(by_class[tier]['boxes'][k])),
                            on_object=share(int(by_class[tier]['on_object'][k]),
                                            int(by_class[tier]['boxes'][k])))
                 for tier in TIERS},
                hidden_boxes=int(gt_by_class[k]),
                recall_high=share(int(found_by_class['high'][k]), int(gt_by_class[k])),
                recall_high_middle=share(int(found_by_class['high_middle'][k]),
                                         int(gt_by_class[k])),
                by_score=by_score(k))
        for k, c in enumerate(classes)}
    return result


def spread(values) -> str:
    """``mean ± std`` of the values that are not None (over checkpoints), or ``-``."""
    values = [v for v in values if v is not None]
    if not values:
        return '-'
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.fmean(values):.2f} ± {sd:.2f}'


def main(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoints', nargs='+', help='TeacherStudent3D checkpoints')
    parser.add_argument('--config', default=osp.join(
        ROOT, 'configs/point_cloud/hssda_pillar-center_demo3d_semi-10pct.py'))
    parser.add_argument('--scenes', type=int, default=100,
                        help='scenes scored per checkpoint')
    parser.add_argument('--pool', choices=POOLS, default='unlabeled',
                        help='which split to score: the unlabeled scenes (their hidden '
                             'labels), the labeled ones, or the validation scenes')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results',
                                                  'pseudo_label_tiers_3d.json'))
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='config changes before the model is built, e.g. '
                             'model.teacher_views=[flip_y]')
    args = parser.parse_args(argv)
    runs = [score_checkpoint(args.config, c, args.scenes, args.cfg_options, args.pool)
            for c in args.checkpoints]

    def fmt(v):
        return '-' if v is None else f'{v:.2f}'

    print(f'| tier | boxes per scene | precision | on an object | ({len(runs)} runs, '
          f'{runs[0]["scenes"]} {args.pool} scenes each) |')
    print('| --- | --- | --- | --- | --- |')
    for tier in TIERS:
        print(f'| {tier} | {spread([r[tier]["per_scene"] for r in runs])} | '
              f'{spread([r[tier]["precision"] for r in runs])} | '
              f'{spread([r[tier]["on_object"] for r in runs])} | |')
    print(f'\nteacher AP of all its boxes against the hidden labels: '
          f'{spread([r["teacher_ap"] for r in runs])}')
    print(f'recall of the hidden boxes: high {spread([r["recall_high"] for r in runs])}, '
          f'high + middle {spread([r["recall_high_middle"] for r in runs])}')
    print('low tier: removed points per scene '
          f'{spread([r["low"]["removed_points_per_scene"] for r in runs])}, of which on '
          f'hidden objects {spread([r["low"]["removed_points_on_objects"] for r in runs])}')
    print('\n| class | high boxes per scene | high precision | middle boxes per scene | '
          'middle precision | recall, high | recall, high + middle |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    for c in runs[0]['per_class']:
        rows = [r['per_class'][c] for r in runs]
        print(f'| {c} | ' + ' | '.join(spread([row[t][k] for row in rows]) for t, k in (
            ('high', 'per_scene'), ('high', 'precision'), ('middle', 'per_scene'),
            ('middle', 'precision'))) + f' | {spread([row["recall_high"] for row in rows])} | '
            f'{spread([row["recall_high_middle"] for row in rows])} |')
    steps = SCORE_STEPS[::2]
    print('\nprecision of the boxes scoring at or above each score:\n\n| class | '
          + ' | '.join(f'>= {t:.2f}' for t in steps) + ' |\n| --- |' + ' --- |' * len(steps))
    for c in runs[0]['per_class']:
        print(f'| {c} | ' + ' | '.join(spread([r['per_class'][c]['by_score'][f'{t:.2f}'][
            'precision'] for r in runs]) for t in steps) + ' |')
    for r in runs:
        print(f'{r["checkpoint"]}: ' + ', '.join(
            f'{t} {r[t]["boxes"]} boxes (precision {fmt(r[t]["precision"])})' for t in TIERS))
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(runs=runs, config=osp.relpath(args.config, ROOT)), f, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
