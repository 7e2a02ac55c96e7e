"""Which signal tells a 3D teacher's false boxes from its right ones? Scored against the
labels the unlabeled demo scenes hide, without training.

The mixing diagnostics (``docs/benchmarks.md``) found that the teacher's false boxes, not
the objects it misses, cost most of the gain perfect pseudo labels show. A filter can only
drop false boxes if some signal ranks them below the right ones better than the teacher's
score does. For each checkpoint, the teacher labels unlabeled scenes as
``pseudo_label_tiers_3d.py`` does (the unaugmented scene), and once more a second view of
each (``--view``: by default mirrored and turned 0.1 rad, HSSDA's consistency view), whose
boxes are mapped back. Each box at or above the model's ``low_score_thr`` gets:

- ``score``: the teacher's score;
- ``view_iou``: the largest BEV IoU with a box of its class from the second view (HSSDA's
  consistency score; 0 when that view has none);
- ``view_score``: the mean of its score and the best-overlapping second-view box's score of
  its class (the two views' consensus, as ``teacher_views`` fuses them);
- ``score_x_iou``: ``score * view_iou``;
- ``points``: the scene's points inside the box;
- ``size_fit``: how well its size fits its class's labeled boxes: minus the largest
  per-dimension distance, in standard deviations, of its log length, width and height from
  the labeled split's boxes of its class (0 at their mean; lower is less like them);
- ``clash_margin``: its score minus the highest score of the teacher's boxes of another
  class on the same spot (BEV overlap, or centres within ``CLASH_DISTANCE`` m; two objects
  cannot share it); its score when there is none;
- ``above``, ``top_gap``, ``low_share`` and ``score_x_top_support``: the shape of the points
  in the box's column (:func:`column_shape`);
- with a head that gives them (``CenterHead3D``): ``class_margin``, its score minus the
  best other class's probability at its peak (``class_scores``); ``yaw_norm``, the length
  of its regressed (sin, cos); and ``score_x_yaw_norm``.

A box is right when its BEV IoU with a hidden box of its class reaches the metric's
threshold for the class (``pseudo_label_tiers_3d.match``). Per class and signal: the
AUROC of right against false boxes (over every box, and over the boxes the teacher scores
at or above ``--kinds-score``, the ones the tiers keep), and the precision of the boxes a
threshold on the signal keeps when it keeps a given share (``--recalls``) of the right
ones, beside the score's: a signal that beats the score at the same share is one a filter
could use.
Per class also the kinds of false box at or above ``--kinds-score`` (``KINDS``): on no
hidden object, on another class's, or on one of its class but misplaced, by its heading
alone (the hidden box's heading would make it right) or otherwise.

Usage::

    python benchmarks/pseudo_label_filters_3d.py \\
        /tmp/screen3d/seed*/pillar-center_demo3d_sup-10pct/iter_1200.pth
"""
import argparse
import json
import os.path as osp
import sys

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import pseudo_label_tiers_3d as tiers  # noqa: E402

SIGNALS = ('score', 'view_iou', 'view_score', 'score_x_iou', 'points', 'size_fit',
           'clash_margin', 'above', 'top_gap', 'low_share', 'score_x_top_support')
ABOVE = 1.0  # metres above a box's top searched for points of a taller thing
HEAD_SIGNALS = ('class_margin', 'yaw_norm', 'score_x_yaw_norm')
CLASH_DISTANCE = 0.5  # metres between BEV centres: one spot
KINDS = ('right', 'on_nothing', 'other_class', 'heading', 'misplaced')


def kinds(boxes, labels, gt_boxes, gt_labels, per_class_thr) -> np.ndarray:
    """Each box's index in ``KINDS``: right; false on no hidden box (BEV IoU 0), on another
    class's (the hidden box it overlaps most), or on its class's but misplaced: by its
    heading alone (with that box's heading it would reach the threshold) or otherwise."""
    from ssl_det.ops import rotated_iou_bev
    out = np.full(len(boxes), KINDS.index('on_nothing'))
    if not len(boxes) or not len(gt_boxes):
        return out
    iou, good = tiers.match(boxes, labels, gt_boxes, gt_labels, per_class_thr)
    best = iou.argmax(dim=1)
    for i in range(len(boxes)):
        j = int(best[i])
        if bool(good[i].any()):
            out[i] = KINDS.index('right')
        elif float(iou[i, j]) <= 0:
            continue
        elif int(gt_labels[j]) != int(labels[i]):
            out[i] = KINDS.index('other_class')
        else:
            turned = boxes[i:i + 1].clone()
            turned[0, 6] = gt_boxes[j, 6]
            fits = float(rotated_iou_bev(turned, gt_boxes[j:j + 1])[0, 0]) >= float(
                per_class_thr[gt_labels[j]])
            out[i] = KINDS.index('heading' if fits else 'misplaced')
    return out


def auroc(values: np.ndarray, right: np.ndarray):
    """The chance that a random right box's value exceeds a random false box's (ties
    count half); None without both kinds."""
    pos, neg = values[right], values[~right]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind='stable')
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    # average ranks over ties
    start = 0
    for k in range(1, len(allv) + 1):
        if k == len(allv) or allv[k] != allv[start]:
            ranks[order[start:k]] = (start + k - 1) / 2 + 1
            start = k
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def precision_at(values: np.ndarray, right: np.ndarray, share: float):
    """Precision of the boxes whose value is at or above the highest threshold that keeps
    at least ``share`` of the right boxes; None without right boxes."""
    if not right.any():
        return None
    need = int(np.ceil(share * right.sum()))
    thr = np.sort(values[right])[::-1][need - 1]
    kept = values >= thr
    return float(right[kept].sum() / kept.sum())


def size_stats(cfg, classes) -> torch.Tensor:
    """(classes, 2, 3): mean and standard deviation of the log length, width and height of
    the labeled split's boxes of each class (``cfg.labeled_dataset``'s annotation file)."""
    split = cfg['labeled_dataset']
    with open(osp.join(ROOT, split.data_root, split.ann_file)) as f:
        frames = json.load(f)['data_list']
    out = torch.zeros(len(classes), 2, 3, dtype=torch.float64)
    for k, name in enumerate(classes):
        dims = [inst['bbox_3d'][3:6] for frame in frames for inst in frame.get('instances') or []
                if inst.get('label_name') == name]
        if len(dims) < 2:
            raise ValueError(f'{split.ann_file}: {len(dims)} labeled {name} boxes; size_fit '
                             'needs at least 2 a class')
        logs = torch.log(torch.tensor(dims, dtype=torch.float64))
        out[k, 0], out[k, 1] = logs.mean(dim=0), logs.std(dim=0).clamp(min=1e-3)
    return out


def size_fit(boxes: torch.Tensor, labels: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """Minus the largest |log size - class mean| / class std over length, width, height."""
    if not len(boxes):
        return boxes.new_zeros(0)
    mean, std = stats[labels, 0], stats[labels, 1]
    return -((torch.log(boxes[:, 3:6].clamp(min=1e-6)) - mean) / std).abs().amax(dim=1)


def clash_margin(boxes: torch.Tensor, labels: torch.Tensor,
                 scores: torch.Tensor) -> torch.Tensor:
    """Each box's score minus the best score of another class's box on its spot (BEV IoU
    above 0 or centres within ``CLASH_DISTANCE``); its score when no such box."""
    from ssl_det.ops import rotated_iou_bev
    if not len(boxes):
        return scores.clone()
    same_spot = ((rotated_iou_bev(boxes, boxes) > 0)
                 | (torch.cdist(boxes[:, :2], boxes[:, :2]) < CLASH_DISTANCE))
    rival = same_spot & (labels[:, None] != labels[None])
    best = torch.where(rival, scores[None].expand(len(scores), -1),
                       torch.zeros_like(scores)[None]).amax(dim=1)
    return scores - best


def column_shape(points: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor) -> dict:
    """Signals from the points of each box's BEV column (negated where more is likelier a
    false box): ``above``, minus the points within ``ABOVE`` m over its top (a post or a tree
    that goes on up); ``top_gap``, minus how far below its top its highest point inside lies
    (:func:`~ssl_det.structures.top_gaps`: a post shorter than the box); ``low_share``, minus
    the share of its points in its lower half (a person stands on two thin legs, a post is
    as dense at its foot); ``score_x_top_support``, the score times
    ``exp(-gap / (0.5 * dz))``, what ``TeacherStudent3D(top_support=0.5)`` gives the tiers."""
    from ssl_det.structures import points_in_boxes, top_gaps, top_support
    if not len(boxes):
        empty = torch.zeros_like(scores)
        return dict(above=empty, top_gap=empty, low_share=empty, score_x_top_support=empty)
    up = boxes.clone()
    up[:, 2] = boxes[:, 2] + boxes[:, 5] / 2 + ABOVE / 2
    up[:, 5] = ABOVE
    above = points_in_boxes(points, up.float()).sum(dim=0).double()
    inside = points_in_boxes(points, boxes.float()).bool()  # (N, M)
    gap = top_gaps(points, boxes).to(scores)
    low = inside & (points[:, 2].double()[:, None] < boxes[:, 2][None])
    low_share = low.sum(dim=0).double() / inside.sum(dim=0).clamp(min=1).double()
    return dict(above=-above, top_gap=-gap, low_share=-low_share,
                score_x_top_support=scores * top_support(points, boxes, 0.5).to(scores))


def signals(model, points: torch.Tensor, sample, matrix: np.ndarray, sizes: torch.Tensor):
    """(boxes, labels, {signal: values}) of the teacher's boxes on one scene; ``sizes`` are
    the labeled boxes' :func:`size_stats`."""
    from ssl_det.ops import rotated_iou_bev
    from ssl_det.structures import points_in_boxes, transform_boxes3d, transform_points
    weak = np.asarray(sample.metainfo.get('lidar_aug_matrix', np.eye(4)),
                      np.float64).reshape(4, 4)
    other = type(sample)(metainfo=dict(sample.metainfo, lidar_aug_matrix=matrix @ weak))
    with torch.no_grad():
        pred, seen = model.teacher.predict(
            dict(points=[points, transform_points(points, matrix)]), [sample, other])
    pred, seen = pred.pred_instances_3d, seen.pred_instances_3d
    keep = pred.scores_3d >= model.low_score_thr
    boxes, scores, labels = (pred.bboxes_3d[keep].double(), pred.scores_3d[keep].double(),
                             pred.labels_3d[keep].long())
    back = transform_boxes3d(seen.bboxes_3d.double(), np.linalg.inv(matrix))
    if len(boxes) and len(back):
        same = labels[:, None] == seen.labels_3d.long()[None]
        iou = rotated_iou_bev(boxes, back) * same
        best_iou, best = iou.max(dim=1)
        other_score = torch.where(best_iou > 0, seen.scores_3d.double()[best],
                                  torch.zeros_like(scores))
    else:
        best_iou, other_score = torch.zeros_like(scores), torch.zeros_like(scores)
    inside = (points_in_boxes(points, boxes.float()).sum(dim=0).double() if len(boxes)
              else torch.zeros_like(scores))
    values = dict(score=scores, view_iou=best_iou, view_score=(scores + other_score) / 2,
                  score_x_iou=scores * best_iou, points=inside,
                  size_fit=size_fit(boxes, labels, sizes.to(boxes)),
                  clash_margin=clash_margin(boxes, labels, scores),
                  **column_shape(points, boxes, scores))
    if 'class_scores' in pred and 'yaw_norm' in pred:
        from ssl_det.models.point_cloud import best_other_class_score
        other = best_other_class_score(pred.class_scores[keep].double(), labels)
        yaw_norm = pred.yaw_norm[keep].double()
        values.update(class_margin=scores - other, yaw_norm=yaw_norm,
                      score_x_yaw_norm=scores * yaw_norm.clamp(max=1))
    return boxes, labels, {k: v.cpu().numpy() for k, v in values.items()}


def score_checkpoint(config: str, checkpoint: str, limit: int, view: dict,
                     shares, kinds_score: float = 0.4, pool: str = 'unlabeled') -> dict:
    from ssl_det.models.utils.teacher_views import check_view, view_matrix
    cfg, model = tiers.load_model(config, checkpoint)
    matrix = view_matrix(**check_view(view))
    dataset, picked = tiers.pool_scenes(cfg, limit, pool)
    classes = list(cfg.metainfo['classes'])
    thr = tiers.match_thresholds(cfg)
    per_class_thr = torch.tensor([thr[c] for c in classes], dtype=torch.float64)
    sizes = size_stats(cfg, classes)
    gathered = {k: [] for k in SIGNALS + HEAD_SIGNALS + ('label', 'right', 'kind')}
    for idx in picked:
        data = dataset[idx]
        gt = data['data_samples'].gt_instances_3d
        gt_boxes = torch.as_tensor(gt.bboxes_3d, dtype=torch.float64).reshape(-1, 7)
        gt_labels = torch.as_tensor(gt.labels_3d).long()
        boxes, labels, values = signals(model, data['inputs']['points'],
                                        data['data_samples'], matrix, sizes)
        kind = kinds(boxes.cpu(), labels.cpu(), gt_boxes, gt_labels, per_class_thr)
        for k in SIGNALS + HEAD_SIGNALS:
            if k in values:
                gathered[k].append(values[k])
        gathered['label'].append(labels.cpu().numpy())
        gathered['right'].append(kind == KINDS.index('right'))
        gathered['kind'].append(kind)
    data = {k: np.concatenate(v) for k, v in gathered.items() if v}
    used = [k for k in SIGNALS + HEAD_SIGNALS if k in data]
    result = dict(checkpoint=checkpoint, pool=pool, scenes=len(picked), view=view,
                  low_score_thr=model.low_score_thr, match_iou=thr, kinds_score=kinds_score,
                  per_class={})
    for k, c in enumerate(classes):
        mine = data['label'] == k
        right = data['right'][mine].astype(bool)
        confident = data['score'] >= kinds_score
        sure = data['kind'][mine & confident]
        result['per_class'][c] = dict(
            boxes=int(mine.sum()), right=int(right.sum()),
            kinds={name: int((sure == n).sum()) for n, name in enumerate(KINDS)},
            auroc={s: auroc(data[s][mine], right) for s in used},
            auroc_confident={s: auroc(data[s][mine & confident],
                                      data['right'][mine & confident].astype(bool))
                             for s in used},
            precision_at={f'{share:.2f}': {s: precision_at(data[s][mine], right, share)
                                           for s in used} for share in shares})
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoints', nargs='+',
                        help='stage-1 detectors or TeacherStudent3D checkpoints')
    parser.add_argument('--config', default=osp.join(
        ROOT, 'configs/point_cloud/hssda_pillar-center_demo3d_semi-10pct.py'))
    parser.add_argument('--scenes', type=int, default=100)
    parser.add_argument('--view', type=json.loads, default={'flip_y': True, 'rot': 0.1},
                        help='the second view, as JSON (teacher_views keys)')
    parser.add_argument('--recalls', type=float, nargs='+', default=[0.5, 0.8])
    parser.add_argument('--pool', choices=tiers.POOLS, default='unlabeled',
                        help="the scenes scored: the unlabeled ones (their hidden labels; "
                             "stage 2 trains on them), or 'val', which no run trains on")
    parser.add_argument('--kinds-score', type=float, default=0.4,
                        help='count the kinds of false box, and rank the boxes again, at or '
                             'above this score')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results',
                                                  'pseudo_label_filters_3d.json'))
    args = parser.parse_args(argv)
    runs = [score_checkpoint(args.config, c, args.scenes, args.view, args.recalls,
                             args.kinds_score, args.pool) for c in args.checkpoints]

    print(f'{len(runs)} checkpoints, {runs[0]["scenes"]} {args.pool} scenes each, second view '
          f'{args.view}; mean ± std over the checkpoints')
    head = ' | '.join(['AUROC', f'AUROC at score >= {args.kinds_score}']
                      + [f'precision at {s:.0%} of the right' for s in args.recalls])
    for c in runs[0]['per_class']:
        rows = [r['per_class'][c] for r in runs]
        print(f'\n{c}: boxes {tiers.spread([r["boxes"] for r in rows])}, right '
              f'{tiers.spread([r["right"] for r in rows])}; at or above {args.kinds_score}: '
              + ', '.join(f'{k} {tiers.spread([r["kinds"][k] for r in rows])}'
                          for k in KINDS))
        print(f'| signal | {head} |')
        print('| --- |' + ' --- |' * (2 + len(args.recalls)))
        for s in rows[0]['auroc']:
            cells = [tiers.spread([r['auroc'][s] for r in rows]),
                     tiers.spread([r['auroc_confident'][s] for r in rows])] + [
                tiers.spread([r['precision_at'][f'{share:.2f}'][s] for r in rows])
                for share in args.recalls]
            print(f'| {s} | ' + ' | '.join(cells) + ' |')
    with open(args.out, 'w') as f:
        json.dump(dict(runs=runs), f, indent=1)
    return runs


if __name__ == '__main__':
    main()
