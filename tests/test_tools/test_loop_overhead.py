"""benchmarks/loop_overhead.py: wall time per iteration over the logged compute time."""
import json
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import loop_overhead  # noqa: E402


def line(stamp, it, time, data_time, total=100):
    return (f'2026/12/02 10:{stamp // 60:02d}:{stamp % 60:02d} - mmengine - INFO - Iter(train) '
            f'[{it:>3}/{total}]  lr: 2.0000e-02  eta: 0:01:00  time: {time:.4f}  '
            f'data_time: {data_time:.4f}  loss: 1.0000')


def test_ratio_of_wall_to_compute_without_evaluation_windows(tmp_path):
    lines = [
        line(0, 20, 0.5, 0.1),
        line(10, 40, 0.5, 0.1),  # 20 iterations in 10 s: 0.5 s each, 0.4 s compute
        line(22, 60, 0.5, 0.1),  # 12 s: 2 s outside the timed step
        '2026/12/02 10:00:30 - mmengine - INFO - Iter(val) [10/63]    eta: 0:00:10',
        line(90, 80, 0.5, 0.1),  # after an evaluation: not the loop's time
        line(100, 100, 0.5, 0.1),
    ]
    result = loop_overhead.measure(lines)
    assert result['iters'] == 60
    assert result['wall_s_per_iter'] == pytest.approx(32 / 60)
    assert result['compute_s_per_iter'] == pytest.approx(0.4)
    assert result['data_s_per_iter'] == pytest.approx(0.1)
    assert result['ratio'] == pytest.approx(32 / 24)
    assert loop_overhead.measure(lines[:1]) is None  # nothing to compare


def test_console_stamps_without_year_and_the_cli(tmp_path):
    run = tmp_path / 'work_dirs' / 'run' / '20261202_100000'
    run.mkdir(parents=True)
    text = [line(0, 20, 0.3, 0.0), line(6, 40, 0.3, 0.0)]
    (run / '20261202_100000.log').write_text('\n'.join(t[5:] for t in text))  # "12/02 ..."
    out = tmp_path / 'overhead.json'
    rows = loop_overhead.main([str(tmp_path / 'work_dirs'), '--out', str(out)])
    assert [r['ratio'] for r in rows] == [pytest.approx(1.0)]
    saved = json.loads(out.read_text())
    assert saved['runs'][0]['run'].endswith('run') and saved['runs'][0]['iters'] == 20
    with pytest.raises(SystemExit):
        loop_overhead.main([str(tmp_path / 'nothing_here'), '--out', str(out)])


def test_the_newest_log_of_a_run_is_measured(tmp_path):
    """A run launched twice keeps one log per launch ({run}/{timestamp}/{timestamp}.log):
    only the newest launch's log is measured, once for the run."""
    for stamp, step_time in (('20261202_100000', 0.6), ('20261203_090000', 0.3)):
        run = tmp_path / 'work_dirs' / 'run' / stamp
        run.mkdir(parents=True)
        text = [line(0, 20, step_time, 0.0), line(6, 40, step_time, 0.0)]  # 0.3 s/it wall
        (run / f'{stamp}.log').write_text('\n'.join(text))
    logs = loop_overhead.find_logs(str(tmp_path / 'work_dirs'))
    assert [osp.basename(log) for log in logs] == ['20261203_090000.log']
    rows = loop_overhead.main([str(tmp_path / 'work_dirs'), '--out', str(tmp_path / 'o.json')])
    assert [r['ratio'] for r in rows] == [pytest.approx(1.0)]
