"""Label efficiency of the point-cloud detector on the synthetic LiDAR demo scenes, over
several seeds: supervised on 10% of the labeled frames (``sup``) vs on all of them
(``oracle``), the same detector, schedule, iterations and augmentation on both sides.

    python benchmarks/label_efficiency_3d.py [--method sup] [--seeds 0 1 2] [--iters N]
        [--work-dir DIR] [--reuse] [--out FILE]

``--method sup`` (the only method until the semi-supervised 3D wrapper lands) trains both
supervised runs per seed. Runs go to ``{work_dir}/seed{seed}/{config name}``; ``--reuse``
takes a finished run whose resolved config and options are unchanged. The metric is
``Box3DAPMetric``'s headline ``ap3d/mAP`` (3D AP averaged over the classes, R40, at the IoU
set the config names ``primary``); every other key of the final evaluation is kept in the
JSON. Writes ``benchmarks/results/label_efficiency_3d.json`` with top-level ``sup`` and
``oracle`` (means over seeds), ``per_seed``, ``std``, ``seeds``, ``iou_thresholds``.
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from ssl_det.utils import experiment  # noqa: E402

DATA_ROOT = osp.join(experiment.ROOT, 'data', 'demo3d')
RUNS = {
    'sup': 'configs/point_cloud/pillar-center_demo3d_sup-10pct.py',
    'oracle': 'configs/point_cloud/pillar-center_demo3d_sup-all.py',
}
METHODS = {'sup': ('sup', 'oracle')}
METRIC = 'ap3d/mAP'


def ensure_data_3d(data_root: str = DATA_ROOT) -> None:
    """Generate the 3D demo scenes and their 10% split unless present."""
    from ssl_det.datasets.demo_data_3d import make_demo_data_3d
    if not osp.isfile(osp.join(data_root, 'train.json')):
        print(f'[demo3d] generating the demo scenes in {data_root}', flush=True)
        make_demo_data_3d(data_root)


def mean_std(values):
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--method', default='sup', choices=sorted(METHODS))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--iters', type=int, default=None,
                        help='iterations of every run (default: the configs\')')
    parser.add_argument('--work-dir', default=osp.join(experiment.ROOT, 'work_dirs',
                                                       'label_efficiency_3d'))
    parser.add_argument('--reuse', action='store_true')
    parser.add_argument('--out', default=osp.join(experiment.ROOT, 'benchmarks', 'results',
                                                  'label_efficiency_3d.json'))
    args = parser.parse_args(argv)
    ensure_data_3d()

    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(experiment.ROOT, RUNS['sup']))
    per_seed = {name: [] for name in METHODS[args.method]}
    runs = {name: [] for name in METHODS[args.method]}
    for seed in args.seeds:
        for name in METHODS[args.method]:
            opts = [f'randomness.seed={seed}']
            if args.iters:
                opts += experiment.iteration_options(args.iters)
            run_dir = osp.join(args.work_dir, f'seed{seed}',
                               osp.splitext(osp.basename(RUNS[name]))[0])
            res = experiment.run_once(RUNS[name], run_dir, opts, args.reuse, marker=METRIC)
            value = float(res['metrics'][METRIC])
            per_seed[name].append(value)
            runs[name].append(dict(seed=seed, value=value, seconds=res['seconds'],
                                   work_dir=osp.relpath(res['work_dir'], experiment.ROOT),
                                   metrics=res['metrics']))
            print(f'[seed {seed}] {name}: {METRIC} = {value:.4f}', flush=True)

    summary = {name: mean_std(v)[0] for name, v in per_seed.items()}
    result = dict(
        summary,
        std={name: mean_std(v)[1] for name, v in per_seed.items()},
        per_seed=per_seed, seeds=args.seeds, method=args.method,
        metric=f'{METRIC}: 3D AP averaged over {list(cfg.metainfo["classes"])}, R40, '
               f'primary={cfg.val_evaluator.get("primary") or "3d/mAP@set0/R40"}',
        iou_thresholds=cfg.val_evaluator['iou_thresholds'],
        iters=args.iters or cfg.train_cfg.max_iters,
        batch_size=cfg.train_dataloader.batch_size,
        runs=runs, machine=f'{platform.processor() or platform.machine()}, '
                           f'{os.cpu_count()} CPUs')
    if 'oracle' in summary and 'sup' in summary:
        result['oracle_minus_sup'] = summary['oracle'] - summary['sup']

    print(f'\n| run | {METRIC} (mean ± std) | per seed {args.seeds} |')
    print('| --- | --- | --- |')
    for name, values in per_seed.items():
        m, s = mean_std(values)
        print(f'| {name} | {m:.3f} ± {s:.3f} | {" / ".join(f"{v:.3f}" for v in values)} |')
    if 'oracle_minus_sup' in result:
        print(f'\noracle - sup = {result["oracle_minus_sup"]:.3f}')
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()
