"""Make semi-supervised labeled/unlabeled splits of a point-cloud info file.

Example (the 3D demo's 1% and 10% splits, one fold):
    python tools/misc/split_point_cloud.py data/demo3d/train.json \
        --percent 1 10 --folds 1 --out-dir data/demo3d/semi_anns
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from ssl_det.datasets.point_cloud_split import split_point_cloud  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('info_file', help='info file (.json/.pkl) to split (left untouched)')
    parser.add_argument('--percent', type=float, nargs='+', default=[1, 2, 5, 10],
                        help='labeled percentages, e.g. 1 10')
    parser.add_argument('--folds', type=int, default=5, help='number of folds (from 1)')
    parser.add_argument('--out-dir', required=True, help='directory for the split files')
    parser.add_argument('--seed', type=int, default=1, help='base random seed')
    parser.add_argument('--data-root', default=None,
                        help='set when lidar_path values are relative to a data root (kept '
                        'as they are) rather than to the info file (rewritten)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        written = split_point_cloud(args.info_file, args.percent, args.folds, args.out_dir,
                                    args.seed, args.data_root)
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f'split_point_cloud: error: {exc}')
    for labeled, unlabeled in written:
        print(f'{labeled}\n{unlabeled}')


if __name__ == '__main__':
    main()
