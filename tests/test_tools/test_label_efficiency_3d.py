"""benchmarks/label_efficiency_3d.py's bookkeeping, with the training replaced by a fake
``two_stage``: options reach every run, and ``--merge`` joins an earlier JSON's seeds to the
seeds trained now, each value under its own seed."""
import json
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import label_efficiency_3d as le3d  # noqa: E402

# per seed, so that a value filed under the wrong seed changes the table
OFFSET = {0: 0.010, 1: 0.040, 2: 0.025}


def fake_value(name: str, seed: int) -> dict:
    base = dict(pretrain_10pct=0.55, pretrain_all=0.62, sup=0.50, oracle=0.70)
    if name in base:
        return {'ap3d/mAP': base[name] + OFFSET[seed]}
    return {'teacher/ap3d/mAP': 0.60 + OFFSET[seed], 'student/ap3d/mAP': 0.58 + OFFSET[seed],
            'ap3d/mAP': 0.60 + OFFSET[seed]}


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def two_stage(protocol, specs, seed, work_dir, pretrain_iters, iters, options, reuse):
        seen.append(dict(seed=seed, specs=list(specs), options=options, protocol=protocol))
        names = [s.partition('=')[0] for s in specs] + ['pretrain_10pct', 'pretrain_all']
        return {n: dict(metrics=fake_value(n, seed), seconds=1.0,
                        work_dir=osp.join(work_dir, n)) for n in names}

    monkeypatch.setattr(le3d.experiment, 'two_stage', two_stage)
    monkeypatch.setattr(le3d, 'ensure_demo_data_3d', lambda root: None)
    return seen


def main(tmp_path, out, *extra):
    return le3d.main(['--method', 'semi', '--methods', 'hssda', '--work-dir',
                      str(tmp_path / 'runs'), '--out', str(tmp_path / out), *extra])


def test_cfg_options_reach_every_run_stage_one_included(calls, tmp_path):
    result = main(tmp_path, 'a.json', '--seeds', '0', '--ablations', 'hssda_unlabeled_8',
                  '--cfg-options', 'channels_last=False')
    options = calls[0]['options']
    assert set(options) == {'sup', 'oracle', 'hssda', 'hssda_unlabeled_8', 'pretrain_10pct',
                            'pretrain_all'}
    assert all(opts[-1] == 'channels_last=False' for opts in options.values())
    # an ablation keeps its own options before the common ones
    assert options['hssda_unlabeled_8'][:-1] == le3d.ABLATIONS['hssda_unlabeled_8'][1]
    assert result['cfg_options'] == ['channels_last=False']


def test_detector_options_reach_the_detector_of_every_run(calls, tmp_path):
    """``--detector-options``: ``model.KEY`` in the supervised configs (stage 1 included),
    ``model.detector.KEY`` in the teacher-student ones; a merge needs the same."""
    result = main(tmp_path, 'a.json', '--seeds', '0', '--ablations', 'hssda_no_middle',
                  '--cfg-options', 'channels_last=False',
                  '--detector-options', 'bbox_head.iou_branch=True')
    options = calls[0]['options']
    for name in ('pretrain_10pct', 'pretrain_all', 'sup', 'oracle'):
        assert options[name] == ['channels_last=False', 'model.bbox_head.iou_branch=True']
    assert options['hssda'] == ['channels_last=False',
                                'model.detector.bbox_head.iou_branch=True']
    assert options['hssda_no_middle'] == le3d.ABLATIONS['hssda_no_middle'][1] + [
        'channels_last=False', 'model.detector.bbox_head.iou_branch=True']
    assert result['detector_options'] == ['bbox_head.iou_branch=True']
    with pytest.raises(ValueError, match='detector-options'):
        main(tmp_path, 'b.json', '--seeds', '1', '--merge', str(tmp_path / 'a.json'),
             '--cfg-options', 'channels_last=False')
    assert len(calls) == 1


def test_merge_adds_the_earlier_seeds_under_their_own_seed(calls, tmp_path):
    main(tmp_path, 'a.json', '--seeds', '0', '1')
    calls.clear()
    result = main(tmp_path, 'b.json', '--seeds', '2', '--merge', str(tmp_path / 'a.json'))
    assert [c['seed'] for c in calls] == [2]  # seeds 0 and 1 are not trained again
    assert result['seeds'] == [0, 1, 2]
    assert result['merged']['seeds'] == [0, 1]
    for name, base in (('sup', 0.50), ('oracle', 0.70), ('semi', 0.60), ('semi_student', 0.58)):
        assert result['per_seed'][name] == pytest.approx([base + OFFSET[s] for s in (0, 1, 2)])
    assert result['stage1']['sup']['per_seed'] == pytest.approx(
        [0.55 + OFFSET[s] for s in (0, 1, 2)])
    assert [r['seed'] for r in result['runs']['hssda']] == [0, 1, 2]
    assert result['gap_closed'] == pytest.approx(0.5)
    with open(tmp_path / 'b.json') as f:
        assert json.load(f)['per_seed'] == result['per_seed']
    # a seed named by --seeds is trained again, not taken from the earlier file
    calls.clear()
    result = main(tmp_path, 'c.json', '--seeds', '1', '--merge', str(tmp_path / 'a.json'))
    assert [c['seed'] for c in calls] == [1] and result['seeds'] == [0, 1]


def test_merge_refuses_other_options_and_missing_runs(calls, tmp_path):
    main(tmp_path, 'a.json', '--seeds', '0')
    earlier = str(tmp_path / 'a.json')
    with pytest.raises(ValueError, match='cfg-options'):
        main(tmp_path, 'b.json', '--seeds', '1', '--merge', earlier,
             '--cfg-options', 'channels_last=False')
    with pytest.raises(ValueError, match="'hssda_unlabeled_8' for seed 0"):
        main(tmp_path, 'b.json', '--seeds', '1', '--merge', earlier,
             '--ablations', 'hssda_unlabeled_8')
    with pytest.raises(ValueError, match="'stage2': 1000.*'stage2': 1500"):
        main(tmp_path, 'b.json', '--seeds', '1', '--merge', earlier, '--stage2-iters', '1500')
    assert len(calls) == 1  # refused before anything trains


def test_the_json_records_the_iterations_the_runs_had(calls, tmp_path):
    default = main(tmp_path, 'a.json', '--seeds', '0')
    assert default['iterations'] == dict(stage1=1200, stage2=1000)
    assert '1,200 iterations from scratch, 1,000 continuing' in default['protocol']
    longer = main(tmp_path, 'b.json', '--seeds', '0', '--stage2-iters', '1500')
    assert longer['iterations'] == dict(stage1=1200, stage2=1500)
    assert '1,500 continuing' in longer['protocol']
    # a JSON from before the record (no 'iterations') ran the configs' own
    with open(tmp_path / 'a.json') as f:
        earlier = json.load(f)
    del earlier['iterations']
    with open(tmp_path / 'old.json', 'w') as f:
        json.dump(earlier, f)
    merged = main(tmp_path, 'c.json', '--seeds', '1', '--merge', str(tmp_path / 'old.json'))
    assert merged['seeds'] == [0, 1]
    with pytest.raises(ValueError, match='iterations'):
        main(tmp_path, 'd.json', '--seeds', '1', '--merge', str(tmp_path / 'old.json'),
             '--stage2-iters', '1500')


def test_merge_refuses_a_teacher_run_without_its_student(calls, tmp_path):
    main(tmp_path, 'a.json', '--seeds', '0')
    with open(tmp_path / 'a.json') as f:
        earlier = json.load(f)
    del earlier['runs']['hssda'][0]['metrics']['student/ap3d/mAP']
    with open(tmp_path / 'a.json', 'w') as f:
        json.dump(earlier, f)
    with pytest.raises(ValueError, match='no student value'):
        main(tmp_path, 'b.json', '--seeds', '1', '--merge', str(tmp_path / 'a.json'))


def test_protocol_option_trains_the_gt_sampling_configs_and_merges_apart(calls, tmp_path,
                                                                         monkeypatch):
    """--protocol demo3d_gt-sample.json: every run from its GT-sampling config, the databases
    built first, the protocol named in the JSON; --merge refuses another protocol's seeds."""
    built = []
    monkeypatch.setattr(le3d, 'ensure_demo_gt_databases', built.append)
    gts = osp.join(ROOT, 'benchmarks', 'protocols', 'demo3d_gt-sample.json')
    result = main(tmp_path, 'g.json', '--seeds', '0', '--protocol', gts)
    protocol = calls[0]['protocol']
    configs = list(protocol['pretrain'].values()) + [c for _, c in protocol['stage2'].values()]
    assert configs and all(c.endswith(('_gt-sample.py', '_gt-sample-all.py')) for c in configs)
    assert built == [le3d.DATA_ROOT]
    assert result['protocol_file'] == 'benchmarks/protocols/demo3d_gt-sample.json'
    main(tmp_path, 'd.json', '--seeds', '1')  # the default protocol
    assert calls[-1]['protocol']['pretrain']['10pct'].endswith('sup-10pct.py')
    assert built == [le3d.DATA_ROOT]
    with pytest.raises(ValueError, match='protocol'):
        main(tmp_path, 'e.json', '--seeds', '0', '--protocol', gts,
             '--merge', str(tmp_path / 'd.json'))
    result = main(tmp_path, 'f.json', '--seeds', '1', '--protocol', gts,
                  '--merge', str(tmp_path / 'g.json'))
    assert result['seeds'] == [0, 1]
    with pytest.raises(SystemExit):  # no mean-teacher config in that protocol
        le3d.main(['--method', 'semi', '--methods', 'mean_teacher', '--protocol', gts,
                   '--work-dir', str(tmp_path / 'runs'), '--out', str(tmp_path / 'x.json')])
    # GT sampling on the whole student input: that protocol's run, from its own config
    result = main(tmp_path, 'p.json', '--seeds', '0', '--protocol', gts,
                  '--methods', 'hssda', 'hssda_paste')
    assert calls[-1]['specs'] == ['sup', 'oracle', 'hssda', 'hssda_paste']
    assert set(result['methods']) == {'hssda', 'hssda_paste'}
    assert result['methods']['hssda_paste']['what'].endswith('_gt-sample-all.py')
    with pytest.raises(SystemExit):  # the default protocol has none
        main(tmp_path, 'q.json', '--seeds', '0', '--methods', 'hssda_paste')


def test_gt_pseudo_diagnostic_teaches_the_unlabeled_scenes_own_labels(tmp_path):
    """``hssda_gt_pseudo``: with its options the unlabeled scenes' weak views carry their
    labels (the file the benchmark writes), and those, not the teacher's boxes, become the
    strong views' high boxes at weight 1."""
    from collections import Counter

    import torch
    from mmengine.config import Config, DictAction

    from demo_helpers import semi_3d_overrides
    from ssl_det.datasets.demo_data_3d import make_demo_data_3d
    from tools import train as train_tool
    root = str(tmp_path / 'scenes') + '/'
    make_demo_data_3d(root, num_train=20, num_val=3, seed=1, verbose=False)
    path = le3d.write_unlabeled_with_labels(root)
    with open(path) as f:
        frames = {item['frame_id']: item['instances'] for item in json.load(f)['data_list']}
    assert len(frames) == 18 and sum(map(len, frames.values())) > 0
    cfg = Config.fromfile(osp.join(ROOT, le3d.STAGE2['hssda'][1]))
    cfg.merge_from_dict(semi_3d_overrides(root, iters=1))
    options = le3d.ABLATIONS['hssda_gt_pseudo'][1]
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in
                         (option.split('=', 1) for option in options)})  # as --cfg-options
    cfg.dump(str(tmp_path / 'cfg.py'))
    runner = train_tool.build_runner(train_tool.parse_args(
        [str(tmp_path / 'cfg.py'), '--work-dir', str(tmp_path / 'run')]))
    model = runner.model
    model.teacher_predict = None  # never asked
    batch = next(iter(runner.train_dataloader))
    data = model.data_preprocessor(batch, True)
    weak = data['data_samples']['unsup_teacher']
    strong = data['data_samples']['unsup_student']
    assert [s.frame_id for s in weak] and all(s.frame_id in frames for s in weak)
    for s in strong:  # the student's own copy of the labels is replaced, not kept
        s.gt_instances_3d = s.gt_instances_3d[:0]
    _, out, stats = model.pseudo_instances(data['inputs']['unsup_teacher'], weak,
                                           data['inputs']['unsup_student'], strong)
    labeled = sum(len(frames[s.frame_id]) for s in weak)
    assert labeled > 0
    assert stats['pseudo/num_high'] + stats['pseudo/num_cut'] == labeled
    assert stats['pseudo/num_middle'] == 0
    for w, s in zip(weak, out):
        assert len(s.gt_instances_3d) <= len(w.gt_instances_3d)
        assert torch.all(s.gt_instances_3d.weights == 1)
        # the weak view's labels, less those a patch border cuts (ignored)
        assert not Counter(s.gt_instances_3d.labels_3d.tolist()) - Counter(
            w.gt_instances_3d.labels_3d.tolist())


def test_mixing_diagnostics_write_the_hidden_labels_and_build_their_models(
        calls, tmp_path, monkeypatch):
    """``hssda_gt_plus_missed`` / ``hssda_gt_minus_false``: the benchmark writes the file
    that keeps the unlabeled scenes' labels, and each run's options, parsed as
    ``--cfg-options`` parses them, build a model that mixes them at the loose IoUs."""
    from mmengine.config import Config, DictAction

    from ssl_det.registry import MODELS
    written = []
    monkeypatch.setattr(le3d, 'write_unlabeled_with_labels', written.append)
    names = ['hssda_gt_plus_missed', 'hssda_gt_minus_false']
    main(tmp_path, 'm.json', '--seeds', '0', '--ablations', *names)
    assert written == [le3d.DATA_ROOT]
    main(tmp_path, 'n.json', '--seeds', '0', '--ablations', 'hssda_ema_0.995')
    assert written == [le3d.DATA_ROOT]  # not for an ablation without hidden labels
    for name, source in zip(names, ['teacher_plus_missed', 'teacher_minus_false']):
        options = calls[0]['options'][name]
        assert options[:len(le3d.ABLATIONS[name][1])] == le3d.ABLATIONS[name][1]
        cfg = Config.fromfile(osp.join(ROOT, le3d.STAGE2['hssda'][1]))
        cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in
                             (option.split('=', 1) for option in options)})
        assert cfg.train_dataloader.dataset.datasets[1].ann_file == le3d.UNLABELED_WITH_LABELS
        model = MODELS.build(cfg.model)
        assert model.pseudo_from == source
        assert model.pseudo_match_iou.tolist() == [0.5, 0.25, 0.25]
