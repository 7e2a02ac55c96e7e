"""How much of a training run's wall time is not compute: wall time per iteration over the
logged compute time per iteration (mmengine's ``time`` minus ``data_time``).

    python benchmarks/loop_overhead.py RUN [RUN ...] [--out FILE]

Each ``RUN`` is a work dir (its newest ``*.log`` below it, one per run directory) or a log
file. From the ``Iter(train)`` lines of a log it takes the wall time between consecutive
lines (their timestamps) and the compute time of the iterations between them (the later
line's window means of ``time - data_time``, times the iterations). Validation and
checkpoint saving are not training-loop overhead: a pair of lines with an evaluation or a
save between them is left out. What remains above 1.0 is time the loop spends waiting for
data (``data_time``) or outside the timed step (hooks, logging, DataLoader restarts).

Prints a table and writes ``benchmarks/results/loop_overhead.json``: ``runs``, a list with
``run``, ``ratio``, ``iters`` (iterations measured), ``wall_s_per_iter``,
``compute_s_per_iter``, ``data_s_per_iter`` and ``log``.
"""
import argparse
import datetime
import glob
import json
import os
import os.path as osp
import platform
import re
import sys
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

_STAMP = re.compile(r'^(?:(\d{4})/)?(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2}) - mmengine')
_TRAIN = re.compile(r'Iter\(train\) \[\s*(\d+)/\s*(\d+)\]')
_FIELD = r'\s{}: ([-+0-9.eE]+|nan|inf)'
_BREAK = ('Iter(val)', 'Epoch(val)', 'Saving checkpoint', 'Evaluating', 'Iter(test)')


def _stamp(line: str, year: int) -> Optional[float]:
    match = _STAMP.match(line)
    if match is None:
        return None
    y, mo, d, h, mi, s = match.groups()
    when = datetime.datetime(int(y) if y else year, int(mo), int(d), int(h), int(mi), int(s))
    return when.timestamp()


def _field(line: str, name: str) -> Optional[float]:
    match = re.search(_FIELD.format(re.escape(name)), line)
    return float(match.group(1)) if match else None


def measure(lines: List[str], year: int = 2000) -> Optional[Dict[str, float]]:
    """Overhead of one log's training lines; None when fewer than two are comparable.

    Args:
        lines: the log's lines.
        year (int): the year for timestamps logged without one (only differences count;
            a run across New Year's night needs the full stamps mmengine writes to files).
    """
    wall = compute = data = 0.0
    iters = 0
    previous = None  # (timestamp, iteration) of the last training line in this segment
    for line in lines:
        if any(marker in line for marker in _BREAK):
            previous = None  # evaluation or saving between two lines: not the loop's
            continue
        train = _TRAIN.search(line)
        if train is None:
            continue
        stamp = _stamp(line, year)
        step, data_time = _field(line, 'time'), _field(line, 'data_time')
        if stamp is None or step is None or data_time is None:
            previous = None
            continue
        it = int(train.group(1))
        if previous is not None and it > previous[1]:
            n = it - previous[1]
            wall += stamp - previous[0]
            compute += n * (step - data_time)
            data += n * data_time
            iters += n
        previous = (stamp, it)
    if iters == 0 or compute <= 0:
        return None
    return dict(ratio=wall / compute, iters=iters, wall_s_per_iter=wall / iters,
                compute_s_per_iter=compute / iters, data_s_per_iter=data / iters)


def find_logs(path: str) -> List[str]:
    """The newest log of each run directory under ``path`` (or ``path`` itself)."""
    if osp.isfile(path):
        return [path]
    newest: Dict[str, str] = {}
    for log in sorted(glob.glob(osp.join(path, '**', '*.log'), recursive=True)):
        run_dir = osp.dirname(osp.dirname(log))  # {run}/{timestamp}/{timestamp}.log
        if log > newest.get(run_dir, ''):
            newest[run_dir] = log
    return sorted(newest.values())


def run_name(log: str) -> str:
    run_dir = osp.dirname(osp.dirname(osp.abspath(log)))
    rel = osp.relpath(run_dir, osp.join(ROOT, 'work_dirs'))
    return run_dir if rel.startswith('..') else rel


def main(argv=None) -> List[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+', help='work dirs or log files')
    parser.add_argument('--out', default=osp.join(ROOT, 'benchmarks', 'results',
                                                  'loop_overhead.json'))
    args = parser.parse_args(argv)
    rows = []
    for path in args.runs:
        logs = find_logs(path)
        if not logs:
            sys.exit(f'no *.log under {path}')
        for log in logs:
            with open(log, encoding='utf-8', errors='replace') as f:
                year = datetime.datetime.fromtimestamp(os.stat(log).st_mtime).year
                result = measure(f.read().splitlines(), year)
            if result is None:
                print(f'skipped {log}: fewer than two training log lines to compare')
                continue
            rows.append(dict(run=run_name(log), **{k: round(v, 4) if isinstance(v, float)
                                                   else v for k, v in result.items()},
                             log=osp.relpath(log, ROOT)))
    if not rows:
        sys.exit('no run had two comparable training log lines')
    width = max(len(r['run']) for r in rows)
    print(f'{"run":<{width}}  iters  wall s/it  compute s/it  data s/it  ratio')
    for r in rows:
        print(f'{r["run"]:<{width}}  {r["iters"]:>5}  {r["wall_s_per_iter"]:>9.3f}  '
              f'{r["compute_s_per_iter"]:>12.3f}  {r["data_s_per_iter"]:>9.3f}  '
              f'{r["ratio"]:>5.2f}')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(runs=rows, machine=dict(platform=platform.platform(),
                                               cpus=os.cpu_count()),
                       definition='wall time per iteration between training log lines / '
                                  '(logged time - data_time); evaluation and checkpoint '
                                  'windows left out'), f, indent=2)
    print(f'wrote {args.out}')
    return rows


if __name__ == '__main__':
    main()
