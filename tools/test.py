"""Evaluate a checkpoint with ssl_det's modules registered (mmdet's flags, plus
--trust-checkpoint and --predict-on for teacher-student models).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
        [--show-dir DIR] [--predict-on teacher|student] [--cfg-options k=v ...]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import ssl_det  # noqa: E402,F401  (registers every ssl_det module)
from ssl_det.registry import RUNNERS  # noqa: E402
from ssl_det.utils.launch import (finish_distributed, prepare_config,  # noqa: E402
                                  use_channels_last, use_fast_nms,
                                  use_fast_roi_align)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the evaluation metrics are written')
    parser.add_argument('--out', help='dump predictions to a .pkl file')
    parser.add_argument('--show-dir', help='save painted predictions under the work dir')
    parser.add_argument('--predict-on', choices=['teacher', 'student'],
                        help='which network of a teacher-student model to evaluate')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow checkpoints that need full unpickling (can run code)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_runner(args) -> Runner:
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg.load_from = args.checkpoint
    if args.predict_on is not None:
        if 'predict_on' not in cfg.model and 'teacher' not in str(cfg.model.get('type')):
            raise ValueError('--predict-on applies to teacher-student models only')
        cfg.model.predict_on = args.predict_on
    if args.show_dir:
        vis_hook = cfg.default_hooks.get('visualization')
        if vis_hook is None:
            raise ValueError('--show-dir needs a `visualization` entry in default_hooks')
        vis_hook.update(draw=True, test_out_dir=args.show_dir)
    prepare_config(cfg, args.launcher, args.trust_checkpoint)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    use_fast_roi_align(runner, cfg)
    use_channels_last(runner, cfg)
    use_fast_nms(cfg)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl file, got {args.out}')
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    return runner


def main(argv=None):
    metrics = build_runner(parse_args(argv)).test()
    finish_distributed()
    return metrics


if __name__ == '__main__':
    main()
