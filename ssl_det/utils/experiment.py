"""Run a training config as a subprocess and read back its final evaluation.

Used by tools/demo.py and the benchmarks: each run gets its own process (clean mmengine
global state) and work dir (logs, checkpoints, pictures), as a user's run would.
"""
import glob
import json
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def last_metrics(work_dir: str) -> Dict[str, float]:
    """The last evaluation logged in the newest run of ``work_dir``."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    metrics: Dict[str, float] = {}
    if files:
        with open(files[-1]) as f:
            for line in f:
                record = json.loads(line)
                if any('bbox_mAP' in k for k in record):
                    metrics = record
    return metrics


def train(config: str, work_dir: str, cfg_options: Optional[List[str]] = None,
          quiet: bool = False) -> Tuple[Dict[str, float], float]:
    """Train ``config`` with tools/train.py; return (final metrics, seconds)."""
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', work_dir]
    if cfg_options:
        cmd += ['--cfg-options', *cfg_options]
    print(f'[run] {" ".join(cmd)}', flush=True)
    start = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL if quiet else None)
    metrics = last_metrics(work_dir)
    if not metrics:
        raise RuntimeError(f'{work_dir} holds no evaluation: did the run validate at the end?')
    return metrics, time.time() - start


def iteration_options(iters: int) -> List[str]:
    """``--cfg-options`` that set the length of a demo config's run: evaluate and save once
    at the end, and keep its LR step at 75% (the demo configs' scheduler is
    ``[LinearLR, MultiStepLR]``)."""
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}', f'param_scheduler.1.end={iters}',
            f'param_scheduler.1.milestones=[{int(iters * 0.75)}]']


def bbox_map(metrics: Dict[str, float], network: str = 'teacher') -> float:
    """bbox mAP of a run: the named network of a teacher-student run, else the detector."""
    for key in (f'{network}/coco/bbox_mAP', 'coco/bbox_mAP'):
        if key in metrics:
            return float(metrics[key])
    raise KeyError(f'no bbox mAP among {sorted(metrics)}')
