"""Build the ground-truth sampling database (ObjectSample's) from a labeled split's info file.

Only the frames of INFO_FILE are read: pass the labeled split's info file, never the full
training set's, or the unlabeled frames' labels leak into training. Example:
    python tools/dataset_converters/create_gt_database.py \
        data/kitti/semi/kitti_infos_train_labeled_10.json \
        --out-dir data/kitti/semi/gt_database_10 --classes Car Pedestrian Cyclist
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))
from ssl_det.datasets.transforms.object_sample import (check_database_leak,  # noqa: E402
                                                       create_gt_database)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('info_file', help="the labeled split's info file (.json or .pkl)")
    parser.add_argument('--out-dir', required=True, help='folder for dbinfos and objects/')
    parser.add_argument('--classes', nargs='+', default=None,
                        help='class names to keep (default: all)')
    parser.add_argument('--data-root', default=None,
                        help="base of relative lidar paths (default: the info file's folder)")
    parser.add_argument('--db-info-name', default='dbinfos.json',
                        help='name of the database info file (.json or .pkl)')
    parser.add_argument('--unlabeled-info-file', default=None,
                        help="the unlabeled split's info file: fail if the database holds any "
                        'of its frames')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        db_file = create_gt_database(args.info_file, args.out_dir, args.classes,
                                     args.data_root, args.db_info_name)
        if args.unlabeled_info_file:
            check_database_leak(db_file, args.unlabeled_info_file)
    except (ValueError, FileNotFoundError) as exc:  # PointCloudDataError is a ValueError
        sys.exit(f'create_gt_database: error: {exc}')
    print(db_file)


if __name__ == '__main__':
    main()
