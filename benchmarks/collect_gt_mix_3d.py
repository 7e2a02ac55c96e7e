"""Collect the hidden-label mixing diagnostics (``hssda_gt_plus_missed``,
``hssda_gt_minus_false``) into one JSON beside the runs they are compared with.

The diagnostics train with ``benchmarks/label_efficiency_3d.py``'s ablations (or any
``experiment.two_stage`` call of them) under ``WORK_DIR/seed{N}/``; ``sup``, ``oracle``, the
default teacher and the perfect pseudo labels come, per seed, from ``BASE`` and
``label_efficiency_3d_gt_pseudo.json`` (the same stage-1 checkpoints: the protocol with the
(sin, cos) head, the headline of 2026-12-06 before the double-angle head). Prints a table
and writes ``--out``.

    python benchmarks/collect_gt_mix_3d.py WORK_DIR --seeds 0 1 2
"""
import argparse
import json
import os.path as osp
import statistics
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
RESULTS = osp.join(ROOT, 'benchmarks', 'results')
sys.path.insert(0, ROOT)
from ssl_det.utils import experiment  # noqa: E402
VARIANTS = ('hssda_gt_plus_missed', 'hssda_gt_minus_false')
CLASSES = ('Car@0.50', 'Pedestrian@0.25', 'Cyclist@0.25')
RUN_DIR = 'hssda_pillar-center_demo3d_semi-10pct_{}'
# sup, oracle and the default teacher of the runs the diagnostics continued from
BASE = osp.join(RESULTS, 'label_efficiency_3d_2026-12-06_sincos.json')


def final_metrics(run_dir: str) -> dict:
    """The run's last evaluation (its logged scalars)."""
    metrics = experiment.last_metrics(run_dir, 'ap3d/mAP')
    if 'teacher/ap3d/mAP' not in metrics:
        raise FileNotFoundError(f'{run_dir} holds no evaluated teacher-student run')
    return metrics


def per_class(metrics: dict) -> list:
    """The teacher's 3D AP per class at the loose set."""
    return [round(metrics[f'teacher/ap3d/3d/{c}/R40'], 4) for c in CLASSES]


def gap(value: float, sup: float, oracle: float) -> float:
    return round((value - sup) / (oracle - sup), 3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--out', default=osp.join(RESULTS, 'label_efficiency_3d_gt_mix.json'))
    args = parser.parse_args(argv)
    with open(BASE) as f:
        base = json.load(f)
    with open(osp.join(RESULTS, 'label_efficiency_3d_gt_pseudo.json')) as f:
        perfect = json.load(f)
    per_seed, columns = {}, {}
    for seed in args.seeds:
        k = base['seeds'].index(seed)
        ref = perfect['per_seed'][str(seed)]
        row = dict(sup=base['per_seed']['sup'][k], oracle=base['per_seed']['oracle'][k],
                   default=base['per_seed']['semi'][k], gt_pseudo=ref['teacher'])
        classes = {n: ref['per_class'][n] for n in ('sup', 'default', 'gt_pseudo', 'oracle')}
        for name in VARIANTS:
            metrics = final_metrics(osp.join(args.work_dir, f'seed{seed}',
                                             RUN_DIR.format(name)))
            row[name] = metrics['teacher/ap3d/mAP']
            row[f'{name}_student'] = metrics['student/ap3d/mAP']
            classes[name] = per_class(metrics)
        row['gap_closed'] = {n: gap(row[n], row['sup'], row['oracle'])
                             for n in ('default', 'gt_pseudo') + VARIANTS}
        row['per_class'] = dict(classes=list(CLASSES), **classes)
        per_seed[str(seed)] = row
        for n in ('sup', 'oracle', 'default', 'gt_pseudo') + VARIANTS:
            columns.setdefault(n, []).append(row[n])
    means = {n: statistics.mean(v) for n, v in columns.items()}
    summary = dict(seeds=args.seeds)
    for n, v in columns.items():
        summary[n] = dict(mean=round(means[n], 4),
                          std=round(statistics.stdev(v), 4) if len(v) > 1 else None)
        if n not in ('sup', 'oracle'):
            summary[n]['gap_closed'] = gap(means[n], means['sup'], means['oracle'])
    summary['per_class_mean'] = {
        n: [round(statistics.mean(per_seed[str(s)]['per_class'][n][c] for s in args.seeds), 4)
            for c in range(len(CLASSES))]
        for n in ('sup', 'default', 'gt_pseudo', 'oracle') + VARIANTS}
    out = dict(
        what="Diagnostics mixing the unlabeled scenes' hidden labels with the HSSDA-style "
             "default's teacher boxes (TeacherStudent3D pseudo_from, pseudo_match_iou "
             '[0.5, 0.25, 0.25] BEV IoU): hssda_gt_plus_missed adds, as score-1 high boxes, '
             'the objects no high or middle box of their class finds; hssda_gt_minus_false '
             "drops the teacher's boxes (every tier) that find no object of their class. "
             f'From the same stage-1 checkpoints as {osp.basename(BASE)}, whose sup, '
             'oracle and default teacher values (and the perfect pseudo labels of '
             'label_efficiency_3d_gt_pseudo.json) are repeated per seed. Not methods: which '
             "of the teacher's errors costs the gain.",
        protocol=base['protocol'], cfg_options=base['cfg_options'],
        summary=summary, per_seed=per_seed)
    with open(args.out, 'w') as f:
        json.dump(out, f, indent=1)
    print(f"{'teacher ap3d/mAP':<24}" + ''.join(f'seed {s:<5}' for s in args.seeds)
          + 'mean ± std      gap closed')
    for n in ('sup', 'default', 'hssda_gt_minus_false', 'hssda_gt_plus_missed', 'gt_pseudo',
              'oracle'):
        s = summary[n]
        std = f" ± {s['std']:.3f}" if s['std'] is not None else ''
        print(f'{n:<24}' + ''.join(f'{v:<10.3f}' for v in columns[n])
              + f"{s['mean']:.3f}{std}".ljust(16) + str(s.get('gap_closed', '')))
    print('per class (mean):', ', '.join(CLASSES))
    for n, v in summary['per_class_mean'].items():
        print(f'  {n:<24}', ' '.join(f'{x:.3f}' for x in v))
    return out


if __name__ == '__main__':
    main()
