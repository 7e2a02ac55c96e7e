"""The end-to-end demo: synthetic data → 10% labeled split → training → COCO bbox mAP.

    python tools/demo.py [--work-dir work_dirs/demo] [--iters N]
        [--methods mean_teacher soft_teacher]

The data live in data/demo (the demo configs' data_root); each run is a tools/train.py
subprocess with its own work dir (logs, checkpoints, pseudo-label pictures in vis_data/).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from ssl_det.utils import experiment  # noqa: E402

DATA_ROOT = osp.join(experiment.ROOT, 'data', 'demo')
# (name, config, what it shows)
SUPERVISED = ('supervised', 'configs/demo/faster-rcnn_r18_fpn_demo_sup-10pct.py',
              '10% labeled only')
SEMI = {
    'mean_teacher': ('mean teacher',
                     'configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py',
                     '10% labeled + 90% unlabeled'),
    'soft_teacher': ('soft teacher',
                     'configs/demo/soft-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py',
                     '10% labeled + 90% unlabeled'),
}


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--iters', type=int, help="override every run's iterations")
    parser.add_argument('--methods', nargs='+', choices=sorted(SEMI), default=['mean_teacher'],
                        help='semi-supervised runs after the supervised one')
    args = parser.parse_args(argv)
    ensure_data()
    rows = []
    for name, config, what in [SUPERVISED] + [SEMI[m] for m in args.methods]:
        work_dir = osp.join(args.work_dir, osp.splitext(osp.basename(config))[0])
        opts = experiment.iteration_options(args.iters) if args.iters else None
        metrics, seconds = experiment.train(config, work_dir, opts)
        for key in sorted(k for k in metrics if k.endswith('bbox_mAP')):
            prefix = key[:-len('bbox_mAP')]
            network = prefix.split('/')[0] if prefix.count('/') > 1 else ''
            rows.append((f'{name} {network}'.strip(), what, metrics[key],
                         metrics.get(prefix + 'bbox_mAP_50', float('nan')), seconds, work_dir))
    print('\n| run | data | bbox mAP | mAP@50 | train+eval time | work dir |')
    print('| --- | --- | --- | --- | --- | --- |')
    for name, what, m, m50, seconds, work_dir in rows:
        print(f'| {name} | {what} | {m:.3f} | {m50:.3f} | {seconds / 60:.1f} min | {work_dir} |')


if __name__ == '__main__':
    main()
