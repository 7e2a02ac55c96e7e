"""benchmarks/heldout_3d.py and the demo's held-out test scenes: runs found by folder under
another work dir, teacher and student scored, missing checkpoints skipped and counted, the
gap closed and the paired difference on the held-out figures."""
import json
import os
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import heldout_3d  # noqa: E402

# held-out scores the fake evaluator returns: (run folder, side) -> ap3d/mAP
HELDOUT = {('sup', None): {0: 0.60, 1: 0.62}, ('oracle', None): {0: 0.80, 1: 0.82},
           ('semi', 'teacher'): {0: 0.70, 1: 0.73}, ('semi', 'student'): {0: 0.69, 1: 0.70},
           ('semi_x', 'teacher'): {0: 0.72, 1: 0.72}, ('semi_x', 'student'): {0: 0.7, 1: 0.7}}
FOLDERS = dict(sup='sup', oracle='oracle', hssda='semi', hssda_x='semi_x')


def fake_work_dir(tmp_path, skip=()):
    runs = {}
    for name, folder in FOLDERS.items():
        for seed in (0, 1):
            # the JSON's work_dir points into another checkout; the run is found by folder
            runs.setdefault(name, []).append(dict(
                seed=seed, value=0.5 + 0.01 * seed, work_dir=f'../elsewhere/seed{seed}/{folder}'))
            if (name, seed) in skip:
                continue
            d = tmp_path / 'wd' / f'seed{seed}' / folder
            d.mkdir(parents=True)
            (d / 'iter_1000.pth').write_text('')
            (d / 'last_checkpoint').write_text(f'/somewhere/else/{folder}/iter_1000.pth')
            (d / f'{folder}.py').write_text('')
    results = tmp_path / 'results.json'
    results.write_text(json.dumps(dict(runs=runs)))
    return str(results), str(tmp_path / 'wd')


def fake_evaluate(calls):
    def evaluate(config, checkpoint, test_dir, side):
        folder = osp.basename(osp.dirname(checkpoint))
        seed = int(osp.basename(osp.dirname(osp.dirname(checkpoint)))[len('seed'):])
        assert config.endswith(f'{folder}.py') and test_dir == 'TEST'
        calls.append((folder, seed, side))
        return {heldout_3d.METRIC: HELDOUT[(folder, side)][seed]}
    return evaluate


def test_heldout_scores_every_run_and_side_and_the_gap_closed(tmp_path):
    results, work_dir = fake_work_dir(tmp_path)
    calls = []
    out = str(tmp_path / 'out.json')
    summary = heldout_3d.main([results, '--work-dir', work_dir, '--against', 'hssda',
                               '--out', out], evaluate_fn=fake_evaluate(calls),
                              ensure_test=lambda root, n: 'TEST')
    assert sorted(calls) == sorted(
        [(f, s, None) for f in ('sup', 'oracle') for s in (0, 1)]
        + [(f, s, side) for f in ('semi', 'semi_x') for s in (0, 1)
           for side in ('teacher', 'student')])
    runs = summary['runs']
    assert runs['hssda']['heldout']['per_seed'] == [0.70, 0.73]
    # (0.715 - 0.61) / (0.81 - 0.61)
    assert runs['hssda']['gap_closed_heldout'] == pytest.approx(0.525)
    assert runs['hssda_student']['gap_closed_heldout'] == pytest.approx((0.695 - 0.61) / 0.2)
    # the val figures are the JSON's, and their gap closed
    assert runs['hssda']['val']['per_seed'] == [0.5, 0.51]
    assert runs['hssda_x']['minus_hssda']['per_seed'] == pytest.approx([0.02, -0.01])
    assert runs['hssda_x_student']['minus_hssda']['per_seed'] == pytest.approx([0.01, 0.0])
    assert 'minus_hssda' not in runs['hssda'] and 'gap_closed_heldout' not in runs['sup']
    assert json.load(open(out))['runs']['hssda']['seeds'] == [0, 1]


def test_a_run_without_its_checkpoint_is_skipped_and_counted(tmp_path):
    results, work_dir = fake_work_dir(tmp_path, skip=[('hssda_x', 1)])
    summary = heldout_3d.main([results, '--work-dir', work_dir, '--out',
                               str(tmp_path / 'o.json')], evaluate_fn=fake_evaluate([]),
                              ensure_test=lambda root, n: 'TEST')
    assert summary['skipped'] == [osp.join(work_dir, 'seed1', 'semi_x')]
    assert summary['runs']['hssda_x']['seeds'] == [0]
    assert summary['runs']['hssda_x']['gap_closed_heldout'] == pytest.approx(0.6)
    results, work_dir = fake_work_dir(tmp_path / 'b', skip=[('sup', 0), ('sup', 1)])
    with pytest.raises(SystemExit, match='sup and oracle'):
        heldout_3d.main([results, '--work-dir', work_dir, '--out', str(tmp_path / 'p.json')],
                        evaluate_fn=fake_evaluate([]), ensure_test=lambda root, n: 'TEST')


def test_demo_test_scenes_are_their_own_frames_and_are_made_once(tmp_path):
    from ssl_det.datasets.demo_data_3d import ensure_demo_test_3d, make_split_3d
    out = ensure_demo_test_3d(str(tmp_path), num_frames=3)
    info = json.load(open(osp.join(out, 'test.json')))
    assert [f['frame_id'] for f in info['data_list']] == ['000720', '000721', '000722']
    assert all(osp.isfile(osp.join(out, f['lidar_path'])) for f in info['data_list'])
    # not the val stream's scenes (stream 1) nor the train stream's (0)
    for index in (0, 1):
        other, _ = make_split_3d(str(tmp_path / f'stream{index}'), 'x', 1, seed=0,
                                 split_index=index)
        first = json.load(open(other))['data_list'][0]['instances']
        assert first != info['data_list'][0]['instances']
    stamp = os.stat(osp.join(out, 'test.json')).st_mtime_ns
    assert ensure_demo_test_3d(str(tmp_path), num_frames=3) == out
    assert os.stat(osp.join(out, 'test.json')).st_mtime_ns == stamp  # not written again
    ensure_demo_test_3d(str(tmp_path), num_frames=4)  # another count: written anew
    assert len(json.load(open(osp.join(out, 'test.json')))['data_list']) == 4


def test_folds_give_the_paired_difference_on_disjoint_sets_of_the_scenes(tmp_path):
    """``--folds 3``: the teachers are scored on three disjoint sets that hold every scene,
    and the paired difference with ``--against`` comes per set, per seed and as a mean."""
    results, work_dir = fake_work_dir(tmp_path)
    test_dir = tmp_path / 'test'
    test_dir.mkdir()
    scenes = [dict(frame_id=f'{i:06d}') for i in range(7)]
    (test_dir / 'test.json').write_text(json.dumps(dict(metainfo={}, data_list=scenes)))
    calls = []

    def evaluate(config, checkpoint, where, side, ann_file='test.json'):
        folder = osp.basename(osp.dirname(checkpoint))
        seed = int(osp.basename(osp.dirname(osp.dirname(checkpoint)))[len('seed'):])
        calls.append((folder, seed, side, ann_file))
        ids = [int(f['frame_id']) for f in json.load(open(osp.join(where, ann_file)))['data_list']]
        # a fold's score: the run's own, plus 0.015 times its first scene for semi_x
        return {heldout_3d.METRIC: HELDOUT[(folder, side)][seed]
                + (0.015 * ids[0] if folder == 'semi_x' and ann_file != 'test.json' else 0)}

    summary = heldout_3d.main([results, '--work-dir', work_dir, '--against', 'hssda',
                               '--folds', '3', '--out', str(tmp_path / 'o.json')],
                              evaluate_fn=evaluate, ensure_test=lambda root, n: str(test_dir))
    folds = [json.load(open(test_dir / f'test_fold{i}of3.json'))['data_list'] for i in range(3)]
    assert [[f['frame_id'] for f in fold] for fold in folds] == [
        ['000000', '000003', '000006'], ['000001', '000004'], ['000002', '000005']]
    # only the teachers of the teacher-student runs, on each fold
    on_folds = sorted(c for c in calls if c[3] != 'test.json')
    assert on_folds == sorted((f, s, 'teacher', f'test_fold{i}of3.json') for f in ('semi', 'semi_x')
                              for s in (0, 1) for i in range(3))
    row = summary['folds']['runs']['hssda_x']
    # semi_x - semi: seed 0 0.02 + (0, 0.015, 0.03), seed 1 -0.01 + the same
    assert row['per_seed'] == [pytest.approx([0.02, 0.035, 0.05]),
                               pytest.approx([-0.01, 0.005, 0.02])]
    assert row['fold_means'] == pytest.approx([0.005, 0.02, 0.035])
    assert (row['above'], row['pairs']) == (5, 6)
    assert summary['folds']['against'] == 'hssda' and 'hssda' not in summary['folds']['runs']
    assert json.load(open(tmp_path / 'o.json'))['folds']['folds'] == 3
    with pytest.raises(SystemExit):  # folds need a run to compare with
        heldout_3d.main([results, '--work-dir', work_dir, '--folds', '3'],
                        evaluate_fn=evaluate, ensure_test=lambda root, n: str(test_dir))
