"""The end-to-end demo: synthetic data → 10% labeled split → training → COCO bbox mAP.

    python tools/demo.py [--seed 0] [--work-dir work_dirs/demo]
        [--methods soft_teacher mean_teacher] [--pretrain-iters N] [--iters N] [--reuse]

The workflow most users follow, with both sides on equal terms:

1. stage 1: Faster R-CNN trained from scratch on the 10% labeled images;
2. stage 2, from that checkpoint, for the same iterations with the same schedule and
   4 labeled images per iteration: supervised on the 10% alone (the baseline), and
   semi-supervised with the other 90% of the images as unlabeled data.

The data live in data/demo (the demo configs' data_root); each run is a tools/train.py
subprocess with its own work dir ``{work_dir}/seed{seed}/{config}`` (logs, checkpoint,
pseudo-label pictures in vis_data/). The table goes to the terminal and, with every run's
metrics, to ``{work_dir}/seed{seed}/demo_results.json``.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from ssl_det.utils import experiment  # noqa: E402

DATA_ROOT = osp.join(experiment.ROOT, 'data', 'demo')
NAMES = {'sup': 'supervised', 'mean_teacher': 'mean teacher', 'soft_teacher': 'soft teacher'}


def ensure_data(data_root: str = DATA_ROOT) -> None:
    """Generate the demo data and its 10% split unless present."""
    from ssl_det.datasets.coco_split import split_coco
    from ssl_det.datasets.demo_data import make_demo_data
    ann = osp.join(data_root, 'annotations', 'instances_train.json')
    if not osp.isfile(ann):
        print(f'[demo] generating demo data in {data_root}', flush=True)
        make_demo_data(data_root)
    split_dir = osp.join(data_root, 'semi_anns')
    if not osp.isfile(osp.join(split_dir, 'instances_train.1@10-unlabeled.json')):
        print('[demo] making the 10% labeled / 90% unlabeled split', flush=True)
        split_coco(ann, [10], folds=1, out_dir=split_dir)


def table(results: dict, methods) -> list:
    """Rows ``(run, data, mAP, mAP@50, seconds, work dir)`` of the demo table."""
    pre = results['pretrain_10pct']
    rows = [('stage 1: supervised', '10% labeled', experiment.bbox_map(pre['metrics']),
             pre['metrics'].get('coco/bbox_mAP_50'), pre['seconds'], pre['work_dir'])]
    for key in ['sup'] + list(methods):
        res = results[key]
        for net in (['teacher', 'student'] if key != 'sup' else ['']):
            prefix = f'{net}/coco/' if net else 'coco/'
            rows.append((f'stage 2: {NAMES[key]} {net}'.strip(),
                         '10% labeled' + (' + 90% unlabeled' if net else ''),
                         res['metrics'][prefix + 'bbox_mAP'],
                         res['metrics'].get(prefix + 'bbox_mAP_50'),
                         None if net == 'student' else res['seconds'], res['work_dir']))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seed', type=int, default=0, help='randomness.seed of every run')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--methods', nargs='+', choices=['mean_teacher', 'soft_teacher'],
                        default=['soft_teacher'],
                        help='semi-supervised stage-2 runs (mean_teacher adds about 5.5 min)')
    parser.add_argument('--pretrain-iters', type=int, help="override stage 1's iterations")
    parser.add_argument('--iters', type=int, help="override every stage-2 run's iterations")
    parser.add_argument('--reuse', action='store_true',
                        help='reuse runs of this seed already finished in the work dir')
    args = parser.parse_args(argv)
    print(f'[demo] seed {args.seed} (--seed to change)', flush=True)
    ensure_data()
    results = experiment.two_stage(['sup'] + args.methods, args.seed, args.work_dir,
                                   args.pretrain_iters, args.iters, reuse=args.reuse)
    print(f'\nseed {args.seed}: stage 2 continues the stage-1 checkpoint; every stage-2 run '
          'has the same iterations, schedule and 4 labeled images per iteration\n')
    print('| run | data | bbox mAP | mAP@50 | train+eval time | work dir |')
    print('| --- | --- | --- | --- | --- | --- |')
    sup = experiment.bbox_map(results['sup']['metrics'])
    for name, data, m, m50, seconds, work_dir in table(results, args.methods):
        time_s = '' if seconds is None else f'{seconds / 60:.1f} min'
        m50_s = '' if m50 is None else f'{m50:.3f}'
        print(f'| {name} | {data} | {m:.3f} | {m50_s} | {time_s} | {work_dir} |')
    summary = {}
    for key in args.methods:
        teacher = experiment.bbox_map(results[key]['metrics'], 'teacher')
        summary[key] = dict(teacher=teacher,
                            student=experiment.bbox_map(results[key]['metrics'], 'student'),
                            gain=teacher - sup)
        print(f'\n{NAMES[key]}: teacher {teacher:.3f} vs supervised {sup:.3f} '
              f'({teacher - sup:+.3f} bbox mAP)')
    out = osp.join(osp.abspath(args.work_dir), f'seed{args.seed}', 'demo_results.json')
    with open(out, 'w') as f:
        json.dump(dict(seed=args.seed, sup=sup, methods=summary, runs=results), f, indent=2)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
