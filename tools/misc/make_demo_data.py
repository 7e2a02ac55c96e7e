"""Generate ssl_det's synthetic demo data set (deterministic for a seed): 2D COCO images
(``--task 2d``, the default) or LiDAR point clouds with a labeled/unlabeled split (``--task 3d``).

    python tools/misc/make_demo_data.py --out-dir data/demo [--num-train 600 --num-val 150]
    python tools/misc/make_demo_data.py --task 3d [--out-dir data/demo3d --num-train 600]
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from ssl_det.datasets.demo_data import make_demo_data  # noqa: E402
from ssl_det.datasets.demo_data_3d import make_demo_data_3d  # noqa: E402

# Per task: (out_dir, num_train, num_val).
DEFAULTS = {'2d': ('data/demo', 1000, 150), '3d': ('data/demo3d', 600, 120)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--task', choices=sorted(DEFAULTS), default='2d',
                        help='2d: COCO images; 3d: LiDAR point clouds')
    parser.add_argument('--out-dir', default=None, help='data/demo (2d), data/demo3d (3d)')
    parser.add_argument('--num-train', type=int, default=None, help='1000 (2d), 600 (3d)')
    parser.add_argument('--num-val', type=int, default=None, help='150 (2d), 120 (3d)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=128, help='2d: image side in pixels')
    parser.add_argument('--labeled-percent', type=float, default=10,
                        help='3d: percentage of train frames in the labeled split (fold 1)')
    parser.add_argument('--azimuth-step', type=float, default=0.3,
                        help='3d: horizontal angle between rays, degrees')
    parser.add_argument('--num-beams', type=int, default=40, help='3d: elevation beams')
    parser.add_argument('--max-objects', type=int, default=15,
                        help='3d: most objects placed in one scene')
    args = parser.parse_args(argv)
    out_dir, num_train, num_val = DEFAULTS[args.task]
    out_dir = args.out_dir if args.out_dir is not None else out_dir
    num_train = args.num_train if args.num_train is not None else num_train
    num_val = args.num_val if args.num_val is not None else num_val
    start = time.time()
    if args.task == '2d':
        files = make_demo_data(out_dir, num_train, num_val, args.seed, args.size)
    else:
        files = make_demo_data_3d(out_dir, num_train, num_val, args.seed,
                                  labeled_percent=args.labeled_percent,
                                  azimuth_step_deg=args.azimuth_step,
                                  num_beams=args.num_beams, max_objects=args.max_objects)
    for split, path in files.items():
        print(f'{split}: {path}')
    print(f'demo data written to {out_dir} in {time.time() - start:.1f} s')


if __name__ == '__main__':
    main()
