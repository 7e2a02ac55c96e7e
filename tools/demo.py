"""The end-to-end demo: synthetic data → 10% labeled split → training → mAP table.

    python tools/demo.py [--task 2d|3d] [--seed 0] [--work-dir DIR] [--methods ...]
        [--pretrain-iters N] [--iters N] [--reuse]

The workflow most users follow, with both sides on equal terms:

1. stage 1: the detector trained from scratch on the 10% labeled images or scenes;
2. stage 2, from that checkpoint, for the same iterations with the same schedule and
   4 labeled samples per iteration: supervised on the 10% alone (the baseline), and
   semi-supervised with the other 90% as unlabeled data.

``--task 2d`` (default): Faster R-CNN on the demo images (data/demo), COCO bbox mAP, Soft
Teacher. ``--task 3d``: the pillar detector on the synthetic LiDAR scenes (data/demo3d), 3D
AP (R40, IoU 0.5/0.25/0.25; KITTI's 0.7/0.5/0.5 in the second column), HSSDA-style
teacher-student, on a shorter budget than the 3D benchmark's so that it takes about
10 minutes on 2 cores. Each run is a tools/train.py subprocess with its own work dir
``{work_dir}/seed{seed}/{config}`` (logs, checkpoint, pseudo-label pictures in vis_data/).
The table goes to the terminal and, with every run's metrics, to
``{work_dir}/seed{seed}/demo_results.json``.
"""
import argparse
import glob
import json
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from ssl_det.utils import experiment  # noqa: E402

DATA_ROOT = osp.join(ROOT, 'data', 'demo')
PROTOCOL_DIR = osp.join(ROOT, 'benchmarks', 'protocols')
NAMES = {'sup': 'supervised', 'mean_teacher': 'mean teacher', 'soft_teacher': 'soft teacher',
         'hssda': 'HSSDA-style'}
# per task: data, semi-supervised methods and default, the metric columns and the budget
# (None: the configs' own iterations)
TASKS = {
    '2d': dict(protocol='demo.json', methods=('soft_teacher', 'mean_teacher'),
               default=['soft_teacher'], unit='images', metric='coco/bbox_mAP',
               second='coco/bbox_mAP_50', columns=('bbox mAP', 'mAP@50'),
               pretrain_iters=None, iters=None),
    '3d': dict(protocol='demo3d.json', methods=('hssda', 'mean_teacher'), default=['hssda'],
               unit='scenes',
               metric='ap3d/mAP', second='ap3d/3d/mAP@set0/R40',
               columns=('3D AP (IoU .5/.25/.25)', '3D AP (KITTI .7/.5/.5)'),
               pretrain_iters=600, iters=400),
}


def ensure_split(data_root: str, percent: float) -> None:
    """Write fold 1 of the ``percent``% labeled / unlabeled split of
    ``data_root/annotations/instances_train.json`` to ``data_root/semi_anns`` unless present."""
    from ssl_det.datasets.coco_split import split_coco
    ann = osp.join(data_root, 'annotations', 'instances_train.json')
    split_dir = osp.join(data_root, 'semi_anns')
    if not osp.isfile(osp.join(split_dir, f'instances_train.1@{percent:g}-unlabeled.json')):
        print(f'[demo] making the {percent:g}% labeled split of {ann}', flush=True)
        split_coco(ann, [percent], folds=1, out_dir=split_dir)


def ensure_data(data_root: str = DATA_ROOT) -> None:
    """Generate the demo data and its 10% split unless present."""
    from ssl_det.datasets.demo_data import make_demo_data
    if not osp.isfile(osp.join(data_root, 'annotations', 'instances_train.json')):
        print(f'[demo] generating demo data in {data_root}', flush=True)
        make_demo_data(data_root)
    ensure_split(data_root, 10)


def metric(metrics: dict, key: str, network: str = ''):
    """``key`` of a run's metrics: the named network's in a teacher-student run."""
    return metrics.get(f'{network}/{key}' if network else key)


def table(results: dict, methods, task: str = '2d') -> list:
    """Rows ``(run, data, metric, second metric, seconds, work dir)`` of the demo table."""
    spec = TASKS[task]
    pre = results['pretrain_10pct']
    rows = [('stage 1: supervised', '10% labeled', metric(pre['metrics'], spec['metric']),
             metric(pre['metrics'], spec['second']), pre['seconds'], pre['work_dir'])]
    for key in ['sup'] + list(methods):
        res = results[key]
        for net in (['teacher', 'student'] if key != 'sup' else ['']):
            rows.append((f'stage 2: {NAMES[key]} {net}'.strip(),
                         '10% labeled' + (' + 90% unlabeled' if net else ''),
                         metric(res['metrics'], spec['metric'], net),
                         metric(res['metrics'], spec['second'], net),
                         None if net == 'student' else res['seconds'], res['work_dir']))
    return rows


def pseudo_label_pictures(work_dir: str) -> list:
    """The pseudo-label pictures a teacher-student run wrote (``PseudoLabelVisHook``)."""
    return sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'vis_image',
                                     'pseudo_labels_*.png')), key=osp.getmtime)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--task', choices=sorted(TASKS), default='2d',
                        help='2d: Faster R-CNN on the demo images; 3d: the pillar detector '
                             'on the synthetic LiDAR scenes')
    parser.add_argument('--seed', type=int, default=0, help='randomness.seed of every run')
    parser.add_argument('--work-dir', help='default: work_dirs/demo (2d), work_dirs/demo3d (3d)')
    parser.add_argument('--methods', nargs='+',
                        choices=sorted({m for t in TASKS.values() for m in t['methods']}),
                        help='semi-supervised stage-2 runs (default: soft_teacher for 2d, '
                             'hssda for 3d; mean_teacher adds one run)')
    parser.add_argument('--pretrain-iters', type=int,
                        help="stage 1's iterations (default: the config's for 2d, 600 for 3d)")
    parser.add_argument('--iters', type=int,
                        help="every stage-2 run's iterations (default: the configs' for 2d, "
                             '400 for 3d)')
    parser.add_argument('--reuse', action='store_true',
                        help='reuse runs of this seed already finished in the work dir')
    args = parser.parse_args(argv)
    spec = TASKS[args.task]
    methods = args.methods or spec['default']
    wrong = [m for m in methods if m not in spec['methods']]
    if wrong:
        parser.error(f'--methods {wrong} are not {args.task} methods; choose from '
                     f'{list(spec["methods"])}')
    work_dir = args.work_dir or ('work_dirs/demo' if args.task == '2d' else 'work_dirs/demo3d')
    pretrain_iters = args.pretrain_iters or spec['pretrain_iters']
    iters = args.iters or spec['iters']
    print(f'[demo] {args.task}, seed {args.seed} (--seed to change)', flush=True)
    protocol = experiment.load_protocol(osp.join(PROTOCOL_DIR, spec['protocol']))
    if args.task == '2d':
        ensure_data()
    else:
        from ssl_det.datasets.demo_data_3d import ensure_demo_data_3d
        ensure_demo_data_3d(osp.join(ROOT, protocol['data']))
    results = experiment.two_stage(protocol, ['sup'] + methods, args.seed, work_dir,
                                   pretrain_iters, iters, reuse=args.reuse)
    print(f'\nseed {args.seed}: stage 2 continues the stage-1 checkpoint; every stage-2 run '
          f'has the same iterations, schedule and 4 labeled {spec["unit"]} per iteration\n')
    first, second = spec['columns']
    print(f'| run | data | {first} | {second} | train+eval time | work dir |')
    print('| --- | --- | --- | --- | --- | --- |')
    for name, data, m, m2, seconds, run_dir in table(results, methods, args.task):
        time_s = '' if seconds is None else f'{seconds / 60:.1f} min'
        m2_s = '' if m2 is None else f'{m2:.3f}'
        print(f'| {name} | {data} | {m:.3f} | {m2_s} | {time_s} | {run_dir} |')
    sup = metric(results['sup']['metrics'], spec['metric'])
    summary = {}
    for key in methods:
        teacher = metric(results[key]['metrics'], spec['metric'], 'teacher')
        pictures = pseudo_label_pictures(results[key]['work_dir'])
        summary[key] = dict(teacher=teacher,
                            student=metric(results[key]['metrics'], spec['metric'], 'student'),
                            gain=teacher - sup, pictures=pictures)
        print(f'\n{NAMES[key]}: teacher {teacher:.3f} vs supervised {sup:.3f} '
              f'({teacher - sup:+.3f} {first})')
        if pictures:
            print(f'pseudo labels of the last logged batch: {pictures[-1]}')
    out = osp.join(osp.abspath(work_dir), f'seed{args.seed}', 'demo_results.json')
    with open(out, 'w') as f:
        json.dump(dict(task=args.task, seed=args.seed, sup=sup, metric=spec['metric'],
                       methods=summary, runs=results), f, indent=2)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
