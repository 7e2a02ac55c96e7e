"""Run training configs as subprocesses and read back their final evaluation.

Used by tools/demo.py and the benchmarks: each run gets its own process (clean mmengine
global state) and work dir (logs, checkpoints, pictures), as a user's run would.

The two-stage protocol (:func:`two_stage`) is the workflow most users follow: stage 1 trains
the detector supervised on the labeled images; stage 2 continues from that checkpoint
either supervised (the baseline) or semi-supervised, for the same iterations with the same
schedule, labeled images per iteration and detector. Only stage 2 differs between them.
Which config runs at which stage is data, not code: the protocol tables live with the
benchmarks and the demo (``benchmarks/protocols/*.json``), read by :func:`load_protocol`.
"""
import glob
import hashlib
import json
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, Iterable, List, Optional, Tuple


def repo_root(path: str) -> str:
    """The checkout that holds ``path``: the nearest directory above it with
    ``tools/train.py`` (configs and the training script are the repository's, not the
    installed package's)."""
    here = osp.dirname(osp.abspath(path))
    while not osp.isfile(osp.join(here, 'tools', 'train.py')):
        parent = osp.dirname(here)
        if parent == here:
            raise FileNotFoundError(f'no tools/train.py in any directory above {path}')
        here = parent
    return here


def load_protocol(path: str) -> dict:
    """Read a protocol table (a JSON file such as ``benchmarks/protocols/demo.json``).

    A protocol names, with paths relative to its repository: ``pretrain`` (labeled set →
    stage-1 config), ``stage2`` (run name → ``[labeled set, config]``), ``marker`` (a key
    of the final evaluation, e.g. ``bbox_mAP``), ``pretrain_lr_step`` (stage 1's schedule
    has an LR step to keep at 75% of its iterations), ``data`` (the data root) and, for
    data split by the benchmark, ``labeled_percent``. The returned dict adds ``root``, the
    repository that holds the file.
    """
    with open(path) as f:
        protocol = json.load(f)
    missing = {'pretrain', 'stage2', 'marker'} - set(protocol)
    if missing:
        raise ValueError(f'protocol {path} lacks {sorted(missing)}')
    protocol['root'] = repo_root(path)
    protocol['stage2'] = {k: tuple(v) for k, v in protocol['stage2'].items()}
    return protocol


def last_metrics(work_dir: str, marker: str = 'bbox_mAP') -> Dict[str, float]:
    """The last evaluation logged in the newest run of ``work_dir`` (the last record with a
    key containing ``marker``: ``bbox_mAP`` for COCO, ``ap3d/mAP`` for the 3D metric)."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    metrics: Dict[str, float] = {}
    if files:
        with open(files[-1]) as f:
            for line in f:
                record = json.loads(line)
                if any(marker in k for k in record):
                    metrics = record
    return metrics


def train(config: str, work_dir: str, root: str, cfg_options: Optional[List[str]] = None,
          quiet: bool = False, marker: str = 'bbox_mAP') -> Tuple[Dict[str, float], float]:
    """Train ``config`` (a path relative to the repository ``root``) with ``root``'s
    tools/train.py, from ``root``; return (final metrics, seconds)."""
    work_dir = osp.abspath(work_dir)  # the run's cwd is the repository root
    cmd = [sys.executable, osp.join(root, 'tools', 'train.py'), config, '--work-dir', work_dir]
    if cfg_options:
        cmd += ['--cfg-options', *cfg_options]
    print(f'[run] {" ".join(cmd)}', flush=True)
    start = time.time()
    subprocess.run(cmd, check=True, cwd=root,
                   stdout=subprocess.DEVNULL if quiet else None)
    metrics = last_metrics(work_dir, marker)
    if not metrics:
        raise RuntimeError(f'{work_dir} holds no evaluation: did the run validate at the end?')
    return metrics, time.time() - start


def iteration_options(iters: int, lr_step: bool = True) -> List[str]:
    """``--cfg-options`` that set the length of a demo config's run: evaluate and save once
    at the end and, with ``lr_step`` (the stage-2 schedule ``[LinearLR, MultiStepLR]``),
    keep its LR step at 75%."""
    opts = [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}']
    if lr_step:
        opts += [f'param_scheduler.1.end={iters}',
                 f'param_scheduler.1.milestones=[{int(iters * 0.75)}]']
    return opts


def bbox_map(metrics: Dict[str, float], network: str = 'teacher') -> float:
    """bbox mAP of a run: the named network of a teacher-student run, else the detector."""
    for key in (f'{network}/coco/bbox_mAP', 'coco/bbox_mAP'):
        if key in metrics:
            return float(metrics[key])
    raise KeyError(f'no bbox mAP among {sorted(metrics)}')


def _stem(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


def final_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint a finished run of ``work_dir`` saved last (mmengine's record); when the
    recorded path is gone (the work dir was moved or copied), that file in ``work_dir``."""
    record = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(record):
        path = open(record).read().strip()
        for candidate in (path, osp.join(work_dir, osp.basename(path))):
            if osp.isfile(candidate):
                return candidate
    return None


# Top-level config keys a run reads besides the Runner's arguments (tools/train.py, ssl_det)
_RUN_KEYS = ('runner_type', 'trust_checkpoint', 'fast_roi_align', 'fast_nms', 'launcher',
             'default_scope')


def run_settings(cfg) -> dict:
    """The settings of a resolved config that a run reads: the Runner's arguments and
    ssl_det's own keys (``_RUN_KEYS``). The config files' helper variables (a list of
    transforms, a crop size) are left out: what they set is already inside those settings,
    so editing one that a run does not use (stage 2's colour operations, for a stage-1
    config with the same base) does not change its digest."""
    import inspect

    from mmengine.runner import Runner
    keys = (set(inspect.signature(Runner.__init__).parameters) - {'self', 'cfg'}) | set(
        _RUN_KEYS)
    return {key: cfg[key] for key in sorted(keys) if key in cfg}


def config_digest(config: str, root: str = '') -> str:
    """SHA-256 of the settings a run of ``config`` (absolute, or relative to ``root``)
    reads, with its bases resolved (:func:`run_settings`): a reused run must come from the
    same settings, not only from a file of the same name."""
    return settings_digest(config, [], root)


def settings_digest(config: str, cfg_options: List[str], root: str = '') -> str:
    """SHA-256 of the settings a run of ``config`` with ``cfg_options`` (``KEY=VALUE``, as
    tools/train.py parses them) reads: the same for two runs whose options and config
    defaults differ but resolve alike (a default that moved into the config, and the run
    that had set it by option)."""
    import argparse

    from mmengine.config import Config, DictAction
    cfg = Config.fromfile(osp.join(root, config))
    if cfg_options:
        parser = argparse.ArgumentParser()
        parser.add_argument('--cfg-options', nargs='+', action=DictAction)
        cfg.merge_from_dict(parser.parse_args(['--cfg-options', *cfg_options]).cfg_options)
    text = json.dumps(run_settings(cfg.to_dict()), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def run_once(config: str, run_dir: str, cfg_options: List[str], root: str,
             reuse: bool = False, need_checkpoint: bool = False,
             marker: str = 'bbox_mAP') -> dict:
    """Train ``config`` (relative to the repository ``root``) in ``run_dir`` once, or with
    ``reuse`` take the finished run found there when it came from the same resolved config
    and options (``ssl_det_run.json``), or from the same config whose settings with the
    options resolve alike (``settings_sha``), and, with ``need_checkpoint``, left its
    checkpoint.

    Returns:
        dict: ``metrics`` (the final evaluation), ``seconds`` (the run's training and
        evaluation time; for a reused run the time it took when it was trained, None when
        its record predates the timing), ``reused``, ``work_dir``, ``config``.
    """
    spec_file = osp.join(run_dir, 'ssl_det_run.json')
    spec = dict(config=config, cfg_options=list(cfg_options),
                config_sha=config_digest(config, root))
    settings_sha = settings_digest(config, list(cfg_options), root)
    done, saved = {}, {}
    if reuse and osp.isfile(spec_file):
        saved = json.load(open(spec_file))
        if {key: saved.get(key) for key in spec} == spec or (
                saved.get('config') == config and saved.get('settings_sha') == settings_sha):
            done = last_metrics(run_dir, marker)
    if done and (not need_checkpoint or final_checkpoint(run_dir)):
        print(f'[reuse] {run_dir}', flush=True)
        result = dict(metrics=done, seconds=saved.get('seconds'), reused=True)
    else:
        metrics, seconds = train(config, run_dir, root, list(cfg_options), marker=marker)
        result = dict(metrics=metrics, seconds=seconds, reused=False)
        with open(spec_file, 'w') as f:
            json.dump(dict(spec, settings_sha=settings_sha, seconds=round(seconds, 1)), f)
    result.update(work_dir=run_dir, config=config)
    return result


def two_stage(protocol: dict, runs: Iterable[str], seed: int, work_dir: str,
              pretrain_iters: Optional[int] = None, iters: Optional[int] = None,
              options: Optional[Dict[str, List[str]]] = None,
              reuse: bool = False) -> Dict[str, dict]:
    """Train a two-stage protocol for one seed and return each run's result.

    Stage 1 (one per labeled set the runs need) trains from scratch; every stage-2 run in
    ``runs`` (keys of the protocol's ``stage2`` table, or ``name=key`` for a variant of a
    key with its own ``options[name]``) continues from its labeled set's stage-1
    checkpoint.

    Args:
        protocol (dict): the tables, from :func:`load_protocol`.
        runs: stage-2 runs, e.g. ``['sup', 'mean_teacher', 'oracle']``.
        seed (int): ``randomness.seed`` of every run.
        work_dir (str): runs go to ``{work_dir}/seed{seed}/{config name}[_{variant}]``.
        pretrain_iters (int, optional): stage-1 iterations (default: the config's).
        iters (int, optional): stage-2 iterations (default: the configs').
        options (dict, optional): extra ``--cfg-options`` per run name (stage 1:
            ``pretrain_10pct`` / ``pretrain_all``).
        reuse (bool): reuse a run whose work dir holds its final evaluation (and, for
            stage 1, its checkpoint) from the same config contents and options instead of
            training it again.

    Returns:
        dict: run name → ``dict(metrics=..., seconds=..., reused=..., work_dir=...,
        config=...)`` (:func:`run_once`);
        stage-1 runs are named ``pretrain_10pct`` / ``pretrain_all``.
    """
    options = options or {}
    pretrain, stage2 = protocol['pretrain'], protocol['stage2']
    seed_dir = osp.join(osp.abspath(work_dir), f'seed{seed}')
    common = [f'randomness.seed={seed}']
    results: Dict[str, dict] = {}

    def run(name: str, config: str, extra: List[str], suffix: str = '',
            reuse: bool = reuse) -> dict:
        run_dir = osp.join(seed_dir, _stem(config) + suffix)
        result = run_once(config, run_dir, common + extra, protocol['root'], reuse,
                          need_checkpoint=name.startswith('pretrain'),
                          marker=protocol['marker'])
        results[name] = result
        return result

    parsed = []
    for spec in runs:
        name, _, key = spec.partition('=')
        parsed.append((name, key or name))
    for labels in dict.fromkeys(stage2[key][0] for _, key in parsed):
        opts = (iteration_options(pretrain_iters, lr_step=protocol['pretrain_lr_step'])
                if pretrain_iters else [])
        run(f'pretrain_{labels}', pretrain[labels],
            opts + list(options.get(f'pretrain_{labels}', [])))
    for name, key in parsed:
        labels, config = stage2[key]
        checkpoint = final_checkpoint(results[f'pretrain_{labels}']['work_dir'])
        if checkpoint is None:
            raise RuntimeError(f'stage 1 of {name} saved no checkpoint in '
                               f'{results[f"pretrain_{labels}"]["work_dir"]}')
        extra = [f'load_from={checkpoint}'] + (iteration_options(iters) if iters else [])
        # a stage 1 trained again invalidates what continued from its old checkpoint
        stage1_reused = results[f'pretrain_{labels}']['reused']
        run(name, config, extra + list(options.get(name, [])),
            '' if name == key else f'_{name}', reuse=reuse and stage1_reused)
    return results
