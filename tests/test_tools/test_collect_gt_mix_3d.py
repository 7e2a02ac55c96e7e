"""benchmarks/collect_gt_mix_3d.py: each diagnostic's final teacher figures are read from its
own run, filed under its own seed, and its gap closed is measured against that seed's
supervised and oracle runs."""
import json
import os
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import collect_gt_mix_3d as collect  # noqa: E402


def fake_run(work_dir, seed, name, value, classes):
    run = osp.join(work_dir, f'seed{seed}', collect.RUN_DIR.format(name), '20261206_000000',
                   'vis_data')
    os.makedirs(run)
    record = {'teacher/ap3d/mAP': value, 'student/ap3d/mAP': value - 0.01}
    record.update({f'teacher/ap3d/3d/{c}/R40': v for c, v in zip(collect.CLASSES, classes)})
    with open(osp.join(run, 'scalars.json'), 'w') as f:
        f.write(json.dumps({'loss': 1.0, 'step': 10}) + '\n')  # a training record first
        f.write(json.dumps(record) + '\n')


def test_each_seed_gets_its_own_runs_and_gap(tmp_path):
    work = str(tmp_path / 'runs')
    values = {(0, 'hssda_gt_plus_missed'): 0.65, (0, 'hssda_gt_minus_false'): 0.60,
              (1, 'hssda_gt_plus_missed'): 0.62, (1, 'hssda_gt_minus_false'): 0.59}
    for (seed, name), v in values.items():
        fake_run(work, seed, name, v, [v + 0.1, v, v - 0.1])
    out = collect.main([work, '--seeds', '0', '1', '--out', str(tmp_path / 'mix.json')])
    with open(collect.BASE) as f:
        base = json.load(f)
    for seed in (0, 1):
        row = out['per_seed'][str(seed)]
        sup, oracle = base['per_seed']['sup'][seed], base['per_seed']['oracle'][seed]
        for name in collect.VARIANTS:
            v = values[seed, name]
            assert row[name] == v and row[f'{name}_student'] == pytest.approx(v - 0.01)
            assert row['gap_closed'][name] == round((v - sup) / (oracle - sup), 3)
            assert row['per_class'][name] == [round(v + 0.1, 4), v, round(v - 0.1, 4)]
    plus = out['summary']['hssda_gt_plus_missed']
    assert plus['mean'] == pytest.approx(0.635) and plus['std'] is not None
    with open(tmp_path / 'mix.json') as f:
        assert json.load(f)['summary'] == json.loads(json.dumps(out['summary']))
    with pytest.raises(FileNotFoundError, match='seed2'):
        collect.main([work, '--seeds', '2', '--out', str(tmp_path / 'none.json')])
