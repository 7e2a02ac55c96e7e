"""The end-to-end demo: synthetic data → 10% labeled split → training → COCO bbox mAP.

    python tools/demo.py [--work-dir work_dirs/demo] [--iters N]

The data live in data/demo (the demo configs' data_root).

Each run is a `tools/train.py` subprocess with its own work dir (logs, checkpoints,
pictures); the summary table at the end reads the evaluation from each work dir.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

# (name, config, what it shows)
RUNS = [
    ('supervised 10%', 'configs/demo/faster-rcnn_r18_fpn_demo_sup-10pct.py',
     'labeled 10% only'),
    ('supervised 100%', 'configs/demo/faster-rcnn_r18_fpn_demo_sup-all.py',
     'all labels (oracle)'),
]


def ensure_data(data_root: str) -> None:
    from ssl_det.datasets.coco_split import split_coco
    from ssl_det.datasets.demo_data import make_demo_data
    ann = osp.join(data_root, 'annotations', 'instances_train.json')
    if not osp.isfile(ann):
        print(f'[demo] generating demo data in {data_root}')
        make_demo_data(data_root)
    split_dir = osp.join(data_root, 'semi_anns')
    if not osp.isfile(osp.join(split_dir, 'instances_train.1@10.json')):
        print('[demo] making the 10% labeled / 90% unlabeled split')
        split_coco(ann, [10], folds=1, out_dir=split_dir)


def last_metrics(work_dir: str) -> dict:
    """The last evaluation logged in the newest run of ``work_dir``."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        return {}
    metrics = {}
    with open(files[-1]) as f:
        for line in f:
            record = json.loads(line)
            if any('bbox_mAP' in k for k in record):
                metrics = record
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--iters', type=int, help='override every run\'s max_iters')
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    ensure_data('data/demo')
    results = []
    for name, config, what in RUNS:
        work_dir = osp.join(args.work_dir, osp.splitext(osp.basename(config))[0])
        cmd = [sys.executable, 'tools/train.py', config, '--work-dir', work_dir]
        if args.iters:
            cmd += ['--cfg-options', f'train_cfg.max_iters={args.iters}',
                    f'train_cfg.val_interval={args.iters}']
        print(f'[demo] {name}: {" ".join(cmd)}', flush=True)
        start = time.time()
        subprocess.run(cmd, check=True)
        results.append((name, what, last_metrics(work_dir), time.time() - start))
    print('\n| run | data | bbox mAP | mAP@50 | time |')
    print('| --- | --- | --- | --- | --- |')
    for name, what, metrics, seconds in results:
        for key in sorted(k for k in metrics if k.endswith('bbox_mAP')):
            prefix = key[:-len('bbox_mAP')]
            print(f'| {name} {prefix.rstrip("/")} | {what} | {metrics[key]:.3f} | '
                  f'{metrics.get(prefix + "bbox_mAP_50", float("nan")):.3f} | '
                  f'{seconds / 60:.1f} min |')


if __name__ == '__main__':
    main()
