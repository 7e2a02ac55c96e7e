"""How much 3D AP do a detector's headings cost? Scored on the validation scenes, without
training.

For each checkpoint (a supervised detector, or a ``TeacherStudent3D`` run's teacher), the
config's validation metric twice: of the boxes as decoded, and of the same boxes with each
one's heading replaced by the heading of the labeled box it sits on (the nearest of its
class whose centre lies within ``--radius`` m in BEV; other boxes unchanged). The second
AP is what the detector would score with perfect headings and everything else as it is:
the difference is the AP its headings cost. Beside it, the heading errors of the boxes that
sit on a labeled object (score at or above ``--score``): within ``NEAR`` rad of the
heading, within ``NEAR`` rad of its reverse (a box's IoU does not tell the two apart), or
in between (what costs the IoU).

Usage::

    python benchmarks/heading_errors_3d.py \\
        /tmp/screen3d/seed1/pillar-center_demo3d_sup-10pct/iter_1200.pth ...
"""
import argparse
import copy
import json
import os.path as osp
import sys

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import pseudo_label_tiers_3d as tiers  # noqa: E402

NEAR = 0.5  # rad
ERROR_KINDS = ('right', 'reversed', 'between')


def wrap(angle: torch.Tensor) -> torch.Tensor:
    return torch.remainder(angle + np.pi, 2 * np.pi) - np.pi


def sitting_on(boxes: torch.Tensor, labels: torch.Tensor, gt_boxes: torch.Tensor,
               gt_labels: torch.Tensor, radius: float):
    """For each box, the index of the nearest labeled box of its class (BEV centres) and
    whether it lies within ``radius``."""
    if not len(boxes) or not len(gt_boxes):
        return (torch.zeros(len(boxes), dtype=torch.long),
                torch.zeros(len(boxes), dtype=torch.bool))
    dist = torch.cdist(boxes[:, :2].double(), gt_boxes[:, :2].double())
    dist[labels.long()[:, None] != gt_labels.long()[None]] = float('inf')
    nearest = dist.argmin(dim=1)
    return nearest, dist.gather(1, nearest[:, None])[:, 0] < radius


def error_kind(error: torch.Tensor) -> torch.Tensor:
    """Index in ``ERROR_KINDS`` of each heading error (rad, any value)."""
    err = wrap(error).abs()
    return torch.where(err <= NEAR, 0, torch.where(err >= np.pi - NEAR, 1, 2))


def score_checkpoint(config: str, checkpoint: str, radius: float, score: float,
                     cfg_options: dict = None) -> dict:
    from ssl_det.registry import DATASETS, METRICS
    cfg, model = tiers.load_model(config, checkpoint, cfg_options)
    dataset = DATASETS.build(copy.deepcopy(cfg.val_dataloader.dataset))
    metrics = {k: METRICS.build(copy.deepcopy(cfg.val_evaluator))
               for k in ('as_decoded', 'labeled_heading')}
    for metric in metrics.values():
        metric.dataset_meta = dataset.metainfo
    classes = list(dataset.metainfo['classes'])
    kinds = np.zeros((len(classes), len(ERROR_KINDS)), dtype=np.int64)
    for i in range(len(dataset)):
        data = dataset[i]
        sample = data['data_samples']
        with torch.no_grad():
            result = model.teacher.predict(dict(points=[data['inputs']['points']]),
                                           [sample])[0]
        pred = result.pred_instances_3d
        gt = sample.gt_instances_3d
        gt_boxes = torch.as_tensor(gt.bboxes_3d, dtype=torch.float32).reshape(-1, 7)
        gt_labels = torch.as_tensor(gt.labels_3d).long()
        nearest, on = sitting_on(pred.bboxes_3d, pred.labels_3d, gt_boxes, gt_labels, radius)
        sure = on & (pred.scores_3d >= score)
        kind = error_kind(pred.bboxes_3d[sure, 6] - gt_boxes[nearest[sure], 6])
        np.add.at(kinds, (pred.labels_3d[sure].long().numpy(), kind.numpy()), 1)
        for name, metric in metrics.items():
            out = copy.deepcopy(result)
            if name == 'labeled_heading' and bool(on.any()):
                boxes = out.pred_instances_3d.bboxes_3d.clone()
                boxes[on, 6] = gt_boxes[nearest[on], 6]
                out.pred_instances_3d.bboxes_3d = boxes
            out.gt_instances_3d = gt
            metric.process(None, [out])
    primary = cfg.val_evaluator.get('primary', '3d/mAP@set0/R40')
    k = int(primary.split('@set')[1].split('/')[0])
    thr = cfg.val_evaluator.iou_thresholds[k]
    keys = [f'3d/{c}@{thr[c]:.2f}/R40' for c in classes] + [primary]
    ap = {}
    for name, metric in metrics.items():
        res = metric.compute_metrics(metric.results)
        ap[name] = {key: float(res[key]) for key in keys}
    return dict(checkpoint=checkpoint, scenes=len(dataset), radius=radius, score=score,
                ap=ap, ap_cost={key: ap['labeled_heading'][key] - ap['as_decoded'][key]
                                for key in keys},
                heading_errors={c: dict(zip(ERROR_KINDS, kinds[j].tolist()))
                                for j, c in enumerate(classes)})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoints', nargs='+')
    parser.add_argument('--config', default=osp.join(
        ROOT, 'configs/point_cloud/hssda_pillar-center_demo3d_semi-10pct.py'))
    parser.add_argument('--radius', type=float, default=1.0,
                        help='BEV centre distance (m) at which a box sits on a labeled one')
    parser.add_argument('--score', type=float, default=0.3,
                        help='count the heading errors of boxes at or above this score')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results',
                                                  'heading_errors_3d.json'))
    args = parser.parse_args(argv)
    from mmengine.config import DictAction
    cfg_options = {}  # parsed as --cfg-options does
    for item in args.cfg_options:
        key, value = item.split('=', 1)
        cfg_options[key] = DictAction._parse_iterable(value)
    runs = [score_checkpoint(args.config, c, args.radius, args.score, cfg_options or None)
            for c in args.checkpoints]
    keys = list(runs[0]['ap']['as_decoded'])
    print('| checkpoint | ' + ' | '.join(k.split('/')[1] for k in keys)
          + ' | heading errors (right / reversed / between), by class |')
    print('| --- |' + ' --- |' * (len(keys) + 1))
    for run in runs:
        cells = [f"{run['ap']['as_decoded'][k]:.3f} → {run['ap']['labeled_heading'][k]:.3f}"
                 for k in keys]
        errors = '; '.join(f"{c} {e['right']}/{e['reversed']}/{e['between']}"
                           for c, e in run['heading_errors'].items())
        print(f"| {run['checkpoint']} | " + ' | '.join(cells) + f' | {errors} |')
    with open(args.out, 'w') as f:
        json.dump(dict(runs=runs), f, indent=1)
    return runs


if __name__ == '__main__':
    main()
