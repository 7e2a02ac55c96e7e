"""Generate ssl_det's synthetic COCO demo data set (deterministic for a seed).

    python tools/misc/make_demo_data.py --out-dir data/demo [--num-train 600 --num-val 150]
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from ssl_det.datasets.demo_data import make_demo_data  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default='data/demo')
    parser.add_argument('--num-train', type=int, default=1000)
    parser.add_argument('--num-val', type=int, default=150)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=128, help='image side in pixels')
    args = parser.parse_args(argv)
    start = time.time()
    files = make_demo_data(args.out_dir, args.num_train, args.num_val, args.seed, args.size)
    for split, path in files.items():
        print(f'{split}: {path}')
    print(f'demo data written to {args.out_dir} in {time.time() - start:.1f} s')


if __name__ == '__main__':
    main()
