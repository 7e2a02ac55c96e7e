"""Convert KITTI's object-detection training frames into an ssl_det point-cloud info file.

Example (the usual 3,712-frame train split, from the repo root):
    python tools/dataset_converters/kitti_to_ssl_det.py data/kitti \
        --out data/kitti/kitti_train.pkl --split-file ImageSets/train.txt

Boxes are written in ssl_det's LiDAR convention (see ssl_det/structures/box3d.py), point
paths relative to the info file's folder. DontCare lines are dropped and counted.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from ssl_det.datasets.kitti import convert_kitti  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('kitti_root', help='KITTI folder holding training/{velodyne,label_2,calib}')
    parser.add_argument('--out', required=True, help='info file to write (.pkl or .json)')
    parser.add_argument('--split-file', default=None,
                        help='frame ids, one a line (relative paths are looked up under '
                        'kitti_root first), e.g. ImageSets/train.txt; default: every frame')
    parser.add_argument('--point-dim', type=int, default=4,
                        help='float32 values per point in the .bin files (default 4)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = convert_kitti(args.kitti_root, args.out, args.split_file, args.point_dim)
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f'kitti_to_ssl_det: error: {exc}')
    per_class = ', '.join(f'{name} {n}' for name, n in summary['boxes'].most_common()) or 'none'
    print(f"wrote {summary['out']}: {summary['frames']} frames, "
          f"{sum(summary['boxes'].values())} boxes ({per_class}); dropped "
          f"{summary['dontcare']} DontCare; {summary['empty_boxes']} boxes hold no point")
    return summary


if __name__ == '__main__':
    main()
