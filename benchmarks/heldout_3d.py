"""Evaluate the final checkpoints of a 3D label-efficiency run on the demo's held-out test
scenes: the same runs, five times as many scenes as the 120 val scenes they were scored on.

``label_efficiency_3d.py`` scores every run once, at its end, on the 120 val scenes. Two
recipes a few thousandths apart then differ by about as much through which scenes those are
as through training (``docs/benchmarks.md``). This script takes a results JSON of that
benchmark and the work dir its runs were trained in, generates the held-out scenes once
(``ensure_demo_test_3d``: 600 scenes from the same generator, a stream no train or val scene
comes from), and evaluates each run's final checkpoint on them with ``tools/test.py``: the
teacher and the student of teacher-student runs. It writes, per run name, the per-seed
``ap3d/mAP`` (the benchmark's metric), its mean and spread, the paired difference with
``--against`` and the gap closed ``(semi - sup) / (oracle - sup)`` of the means, beside the
JSON's val figures. With ``--folds K`` the teachers are also scored on K disjoint sets of
the held-out scenes (every K-th scene), and the paired difference with ``--against`` is
given per set: how far one draw of ``scenes / K`` scenes (120 of 600: the val set's size)
moves that difference. A run is found at ``{work_dir}/seed{seed}/{its run folder}`` (the JSON's
``work_dir`` may be relative to another checkout); runs whose checkpoint is gone are
skipped and counted.

Usage::

    python benchmarks/heldout_3d.py benchmarks/results/label_efficiency_3d.json \\
        --work-dir work_dirs/label_efficiency_3d [--runs sup oracle hssda] \\
        [--against hssda] [--folds 5] \\
        [--out benchmarks/results/label_efficiency_3d_heldout.json]
"""
import argparse
import glob
import json
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
from typing import Callable, Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from ssl_det.datasets.demo_data_3d import (DEMO_TEST_FRAMES,  # noqa: E402
                                           ensure_demo_test_3d)
from ssl_det.utils import experiment  # noqa: E402

METRIC = 'ap3d/3d/mAP@set1/R40'  # the benchmark's ap3d/mAP
DATA_ROOT = osp.join(ROOT, 'data', 'demo3d')


def run_dirs(results: dict, work_dir: str, names: Optional[List[str]] = None) -> Dict:
    """``{name: {seed: run folder}}`` of the JSON's runs, found under ``work_dir``."""
    out = {}
    for name, records in results['runs'].items():
        if names and name not in names:
            continue
        for rec in records:
            folder = osp.join(work_dir, f'seed{rec["seed"]}', osp.basename(
                osp.normpath(rec['work_dir'])))
            out.setdefault(name, {})[rec['seed']] = folder
    return out


def evaluate(config: str, checkpoint: str, test_dir: str, side: Optional[str],
             ann_file: str = 'test.json') -> dict:
    """``tools/test.py`` on the held-out scenes of ``ann_file`` in ``test_dir``: the
    metrics dict it writes."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, osp.join(ROOT, 'tools', 'test.py'), config, checkpoint,
               '--work-dir', tmp, '--cfg-options',
               f'test_dataloader.dataset.data_root={test_dir}/',
               f'test_dataloader.dataset.ann_file={ann_file}', 'channels_last=False']
        if side is not None:
            cmd[4:4] = ['--predict-on', side]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        found = glob.glob(osp.join(tmp, '*', '*.json'))
        if done.returncode != 0 or not found:
            raise RuntimeError(f'tools/test.py failed on {checkpoint}:\n{done.stderr[-2000:]}')
        with open(found[0]) as f:
            return json.load(f)


def write_folds(test_dir: str, folds: int) -> List[str]:
    """``folds`` annotation files beside ``test.json`` in ``test_dir``, fold ``i`` with every
    ``folds``-th scene from the ``i``-th: disjoint, together every scene. Their names."""
    with open(osp.join(test_dir, 'test.json')) as f:
        info = json.load(f)
    names = []
    for i in range(folds):
        names.append(f'test_fold{i}of{folds}.json')
        with open(osp.join(test_dir, names[-1]), 'w') as f:
            json.dump(dict(info, data_list=info['data_list'][i::folds]), f)
    return names


def fold_differences(scores: Dict[str, Dict[int, List[float]]], against: str) -> dict:
    """Per run, the paired difference with ``against`` on each fold: per seed (the seeds
    both have), their mean per fold, and how many (seed, fold) pairs are above 0."""
    out = {}
    for name, per in scores.items():
        if name == against:
            continue
        seeds = sorted(set(per) & set(scores[against]))
        diffs = {s: [a - b for a, b in zip(per[s], scores[against][s])] for s in seeds}
        if not diffs:
            continue
        means = [statistics.mean(d[i] for d in diffs.values())
                 for i in range(len(next(iter(diffs.values()))))]
        out[name] = dict(seeds=seeds, per_seed=[diffs[s] for s in seeds], fold_means=means,
                         above=sum(x > 0 for d in diffs.values() for x in d),
                         pairs=sum(len(d) for d in diffs.values()))
    return out


def spread(values: List[float]) -> dict:
    return dict(per_seed=values, mean=statistics.mean(values),
                std=statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(results: dict, scores: Dict[str, Dict[int, float]], against: Optional[str]):
    """Per run name, over its seeds that ``sup`` and ``oracle`` have too: held-out per seed,
    the JSON's val figures of the same seeds, the gap closed on both, and the paired
    difference with ``against`` (student with student)."""
    val = {name: {rec['seed']: rec['value'] for rec in recs}
           for name, recs in results['runs'].items()}
    both = set(scores['sup']) & set(scores['oracle'])
    out = dict(metric=METRIC, runs={})
    for name, per in scores.items():
        seeds = sorted(set(per) & both)
        row = dict(seeds=seeds, heldout=spread([per[s] for s in seeds]))
        if name in val and all(s in val[name] for s in seeds):
            row['val'] = spread([val[name][s] for s in seeds])
        if name not in ('sup', 'oracle'):
            for key, table in (('heldout', scores), ('val', val)):
                if key not in row:
                    continue
                lo, hi = (statistics.mean(table[k][s] for s in seeds) for k in ('sup', 'oracle'))
                if hi > lo:
                    row[f'gap_closed_{key}'] = (row[key]['mean'] - lo) / (hi - lo)
        base = (against or '') + ('_student' if name.endswith('_student') else '')
        if against and name not in ('sup', 'oracle', base) and base in scores \
                and all(s in scores[base] for s in seeds):
            row[f'minus_{against}'] = spread([per[s] - scores[base][s] for s in seeds])
        out['runs'][name] = row
    return out


def main(argv=None, evaluate_fn: Callable = evaluate,
         ensure_test: Callable = ensure_demo_test_3d):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('results', help="a label_efficiency_3d.py JSON")
    parser.add_argument('--work-dir', required=True,
                        help='where its runs are: {work_dir}/seed{seed}/{run folder}')
    parser.add_argument('--runs', nargs='+', help='run names to evaluate (default: all)')
    parser.add_argument('--against', help='a run name: paired differences with it')
    parser.add_argument('--scenes', type=int, default=DEMO_TEST_FRAMES,
                        help='held-out scenes (written once; another count writes them anew)')
    parser.add_argument('--folds', type=int, default=0,
                        help='also score the teachers on this many disjoint sets of the '
                        'scenes: the paired difference with --against per set')
    parser.add_argument('--data-root', default=DATA_ROOT)
    parser.add_argument('--out', help='default: the results JSON with _heldout before .json')
    args = parser.parse_args(argv)
    with open(args.results) as f:
        results = json.load(f)
    if args.folds and (args.folds < 2 or not args.against):
        parser.error('--folds needs 2 or more sets and --against')
    test_dir = ensure_test(args.data_root, args.scenes)
    fold_files = write_folds(test_dir, args.folds) if args.folds else []
    fold_scores: Dict[str, Dict[int, List[float]]] = {}
    names = args.runs and sorted(set(args.runs) | {'sup', 'oracle'})
    scores: Dict[str, Dict[int, float]] = {}
    missing = []
    for name, per_seed in run_dirs(results, args.work_dir, names).items():
        for seed, folder in sorted(per_seed.items()):
            ckpt = experiment.final_checkpoint(folder)
            configs = sorted(glob.glob(osp.join(folder, '*.py')))
            if ckpt is None or not configs:
                missing.append(folder)
                continue
            sides = ['teacher', 'student'] if name not in ('sup', 'oracle') else [None]
            for side in sides:
                metrics = evaluate_fn(configs[0], ckpt, test_dir, side)
                key = name + ('_student' if side == 'student' else '')
                scores.setdefault(key, {})[seed] = metrics[METRIC]
                print(f'[seed {seed}] {key}: {METRIC} = {metrics[METRIC]:.4f}', flush=True)
            if fold_files and name not in ('sup', 'oracle'):  # its teacher on each fold
                fold_scores.setdefault(name, {})[seed] = [
                    evaluate_fn(configs[0], ckpt, test_dir, 'teacher', ann_file=a)[METRIC]
                    for a in fold_files]
    if missing:
        print(f'{len(missing)} runs skipped, no final checkpoint: {missing}', flush=True)
    if not {'sup', 'oracle'} <= set(scores):
        raise SystemExit('the sup and oracle runs are needed for the gap closed; none found '
                         f'under {args.work_dir}')
    summary = summarise(results, scores, args.against)
    summary.update(results_file=osp.relpath(osp.abspath(args.results), ROOT),
                   test_scenes=args.scenes, skipped=missing)
    if fold_files:
        if args.against not in fold_scores:
            raise SystemExit(f'--folds: no teacher of {args.against!r} was scored')
        summary['folds'] = dict(folds=args.folds, scenes_per_fold=args.scenes // args.folds,
                                against=args.against,
                                runs=fold_differences(fold_scores, args.against))
    print(f'\nheld-out scenes: {args.scenes}')
    print('| run | seeds | held-out, mean ± std | per seed | val, mean ± std | gap closed '
          'held-out / val |')
    print('| --- | --- | --- | --- | --- | --- |')
    for name, row in summary['runs'].items():
        h, v = row['heldout'], row.get('val')
        gaps = ' / '.join(f'{row[k]:.3f}' if k in row else '-'
                          for k in ('gap_closed_heldout', 'gap_closed_val'))
        cells = [name, ' '.join(map(str, row['seeds'])), f'{h["mean"]:.4f} ± {h["std"]:.4f}',
                 ' / '.join(f'{x:.4f}' for x in h['per_seed']),
                 f'{v["mean"]:.4f} ± {v["std"]:.4f}' if v else '-', gaps]
        print('| ' + ' | '.join(cells) + ' |')
    if fold_files:
        print(f'\nteacher minus {args.against}, mean over seeds, on {args.folds} disjoint sets '
              f'of about {args.scenes // args.folds} of the scenes:')
        print('| run | seeds | per set | (seed, set) pairs above |\n| --- | --- | --- | --- |')
        for name, row in summary['folds']['runs'].items():
            print(f"| {name} | {' '.join(map(str, row['seeds']))} | "
                  + ' / '.join(f'{x:+.4f}' for x in row['fold_means'])
                  + f" | {row['above']} of {row['pairs']} |")
    out = args.out or args.results[:-len('.json')] + '_heldout.json'
    with open(out, 'w') as f:
        json.dump(summary, f, indent=1)
    print(f'wrote {out}')
    return summary


if __name__ == '__main__':
    main()
