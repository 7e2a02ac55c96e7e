"""Train a detector (supervised or semi-supervised) with ssl_det's modules registered.

Same flags as mmdet's tools/train.py, plus --trust-checkpoint.
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi] [--trust-checkpoint]
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
                                  resume_config, silence_expected_warnings,
                                  use_channels_last, use_fast_nms,
                                  use_fast_roi_align)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector with ssl_det')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true', help='scale LR by batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the latest checkpoint of the work dir')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow loading checkpoints that need full unpickling (can run '
                             'code: only for files you trust)')
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
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError('--auto-scale-lr needs `auto_scale_lr = dict(enable=False, '
                               'base_batch_size=N)` in the config')
        cfg.auto_scale_lr.enable = True
    prepare_config(cfg, args.launcher, args.trust_checkpoint)
    if args.resume is not None:
        resume_config(cfg, None if args.resume == 'auto' else args.resume)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    use_fast_roi_align(runner, cfg)
    use_channels_last(runner, cfg)
    use_fast_nms(cfg)
    silence_expected_warnings(runner)
    return runner


def main(argv=None):
    runner = build_runner(parse_args(argv))
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()
