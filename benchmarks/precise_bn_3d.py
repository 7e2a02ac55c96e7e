"""What ``PreciseBNHook`` does to a trained model: each run's final checkpoint validated as
saved, then again after the hook has re-estimated the BatchNorm statistics (the hook's own
code, as at the last iteration of training: the checkpoint is the state the hook starts
from). A teacher-student run's teacher is re-estimated on the views of ``--branch`` (by
default the hook's: the branches whose batches update the student's running statistics in
training, ``sup`` and ``unsup_student`` for the 3D recipes; ``--branch unsup_student`` for
the strong views alone), a supervised run on its own training batches.

Usage::

    python benchmarks/precise_bn_3d.py WORK_DIR/seed*/hssda_pillar-center_demo3d_semi-10pct \\
        --out benchmarks/results/precise_bn_3d.json [--branch unsup_student]

Each argument is a run's work directory (its dumped config and ``last_checkpoint``). Prints
a table of the teacher's primary metric before and after, per run, and writes JSON (with
``bn_var_ratio_median``: the median ratio of the re-estimated to the saved running
variances, how far the statistics moved).
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
import tempfile

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)


def evaluate(run_dir: str, num_samples: int, seed: int, branch=None) -> dict:
    with tempfile.TemporaryDirectory(prefix='precise_bn_') as work_dir:  # logs, removed after
        return _evaluate(run_dir, num_samples, seed, branch, work_dir)


def _evaluate(run_dir, num_samples, seed, branch, work_dir):
    from mmengine.config import Config
    from mmengine.runner import Runner

    import ssl_det  # noqa: F401  (registers everything)
    from ssl_det.engine.hooks import PreciseBNHook
    from ssl_det.engine.hooks.precise_bn_hook import bn_layers

    configs = sorted(glob.glob(osp.join(run_dir, '*.py')))
    if not configs:
        raise FileNotFoundError(f'no dumped config (*.py) in {run_dir}')
    with open(osp.join(run_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    if not osp.isabs(checkpoint):
        checkpoint = osp.join(run_dir, osp.basename(checkpoint))
    cfg = Config.fromfile(configs[0])
    cfg.work_dir = work_dir
    cfg.load_from, cfg.resume = checkpoint, False
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', [])
                        if h['type'] not in ('PseudoLabelVisHook', 'PreciseBNHook')]
    for key in ('val_dataloader', 'train_dataloader'):
        cfg[key].num_workers, cfg[key].persistent_workers = 0, False
    cfg.experiment_name = f'precise_bn_{os.getpid()}_{abs(hash(run_dir))}'
    cfg.visualizer.name = cfg.experiment_name
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    key = cfg.val_evaluator.get('primary', '3d/mAP@set1/R40')
    before = runner.val_loop.run()
    layers = bn_layers(getattr(runner.model, 'teacher', runner.model))
    saved = torch.cat([m.running_var.clone() for m in layers])
    runner.model.train()  # as in training (validation left it in eval mode): frozen layers
    hook = PreciseBNHook(num_samples=num_samples, branch=branch, seed=seed)
    hook.update(runner)
    # how far the statistics moved: the median ratio of new to saved running variances
    ratio = torch.cat([m.running_var for m in layers]) / saved.clamp_min(1e-12)
    after = runner.val_loop.run()

    # the headline and its source; a supervised run's keys have no prefix
    prefix = 'teacher/' if 'teacher/ap3d/mAP' in before else ''
    wanted = (f'{prefix}ap3d/mAP', f'{prefix}ap3d/{key}')

    def pick(metrics):
        return {k: round(float(metrics[k]), 4) for k in wanted if k in metrics}
    return dict(run_dir=run_dir, checkpoint=checkpoint, num_samples=num_samples,
                branch=list(hook.branches(runner)) if prefix else None,
                before=pick(before), after=pick(after), metric=wanted[0],
                bn_var_ratio_median=round(float(ratio.median()), 4),
                gain=round(float(after[wanted[0]] - before[wanted[0]]), 4))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('run_dirs', nargs='+')
    parser.add_argument('--num-samples', type=int, default=512)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--branch', nargs='+', default=None,
                        help="a teacher's views, one batch of each branch in turn (default: "
                             "the branches that update the student's statistics in training)")
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results',
                                                  'precise_bn_3d.json'))
    args = parser.parse_args(argv)
    rows = [evaluate(d, args.num_samples, args.seed, args.branch) for d in args.run_dirs]
    print(f"\n{'run':<72} {'before':>8} {'after':>8} {'gain':>8} {'var ratio':>9}")
    for r in rows:
        name = '/'.join(r['run_dir'].rstrip('/').split('/')[-2:])
        print(f"{name:<72} {r['before'][r['metric']]:>8.4f} "
              f"{r['after'][r['metric']]:>8.4f} {r['gain']:>+8.4f} "
              f"{r['bn_var_ratio_median']:>9.3f}")
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(runs=rows), f, indent=1)
    print(f'wrote {args.out}')
    return rows


if __name__ == '__main__':
    main()
