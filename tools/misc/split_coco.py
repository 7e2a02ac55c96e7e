"""Make semi-supervised labeled/unlabeled splits of a COCO annotation file.

Example (the standard 1/2/5/10% x 5-fold COCO splits):
    python tools/misc/split_coco.py data/coco/annotations/instances_train2017.json \
        --percent 1 2 5 10 --folds 5 --out-dir data/coco/semi_anns
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from ssl_det.datasets.coco_split import split_coco  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('ann_file', help='COCO annotation file to split (left untouched)')
    parser.add_argument('--percent', type=float, nargs='+', default=[1, 2, 5, 10],
                        help='labeled percentages, e.g. 0.5 1 2 5 10')
    parser.add_argument('--folds', type=int, default=5, help='number of folds (from 1)')
    parser.add_argument('--out-dir', required=True, help='directory for the split files')
    parser.add_argument('--seed', type=int, default=1, help='base random seed')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        written = split_coco(args.ann_file, args.percent, args.folds, args.out_dir, args.seed)
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f'split_coco: error: {exc}')
    for labeled, unlabeled in written:
        print(f'{labeled}\n{unlabeled}')


if __name__ == '__main__':
    main()
