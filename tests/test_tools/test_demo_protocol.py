"""The demo's two-stage protocol (tools/demo.py, benchmarks/label_efficiency.py): every
stage-2 run continues the stage-1 checkpoint with the same seed; finished runs are reused
only when their config and options are the same."""
import glob
import os
import os.path as osp

import json

import pytest
from demo_helpers import as_cli, data_overrides
from ssl_det.utils import experiment

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PROTOCOLS = sorted(glob.glob(osp.join(ROOT, 'benchmarks', 'protocols', '*.json')))
DEMO = experiment.load_protocol(osp.join(ROOT, 'benchmarks', 'protocols', 'demo.json'))


def run_log(work_dir):
    return ''.join(open(p).read() for p in glob.glob(osp.join(work_dir, '*', '*.log')))


def data_options(root, semi=False):
    opts = data_overrides(root, semi)
    del opts['load_from']  # two_stage sets it: the stage-1 checkpoint
    return as_cli(opts)


def test_stage_two_continues_stage_one_and_reuse_follows_options(tiny_demo, tmp_path):
    sup = data_options(tiny_demo) + ['train_dataloader.batch_size=2']
    semi = data_options(tiny_demo, semi=True) + [
        'train_dataloader.batch_size=2', 'train_dataloader.sampler.batch_size=2',
        'custom_hooks.3.interval=0', 'model.pseudo_label.min_count=1']
    options = {'pretrain_10pct': sup, 'sup': sup, 'mean_teacher': semi}
    results = experiment.two_stage(DEMO, ['sup', 'mean_teacher'], 7, str(tmp_path), 2, 2, options)

    stage1 = results['pretrain_10pct']
    checkpoint = osp.join(stage1['work_dir'], 'iter_2.pth')
    assert osp.isfile(checkpoint) and stage1['work_dir'].startswith(str(tmp_path / 'seed7'))
    for name in ('sup', 'mean_teacher'):
        log = run_log(results[name]['work_dir'])
        assert f'Load checkpoint from {checkpoint}' in log, name
        assert "seed=7" in log or 'seed: 7' in log, name
        assert results[name]['seconds'] is not None and not results[name]['reused']
    assert 'teacher/coco/bbox_mAP' in results['mean_teacher']['metrics']
    assert 'coco/bbox_mAP' in results['sup']['metrics']

    again = experiment.two_stage(DEMO, ['sup', 'mean_teacher'], 7, str(tmp_path), 2, 2, options,
                                 reuse=True)
    assert all(r['reused'] for r in again.values())
    assert again['mean_teacher']['metrics'] == results['mean_teacher']['metrics']
    # a reused run reports the time it took when it was trained (the benchmark's minutes)
    for name, res in again.items():
        assert res['seconds'] == round(results[name]['seconds'], 1), name
    # a record written before the timing was kept: still reused, its time unknown
    record = osp.join(results['sup']['work_dir'], 'ssl_det_run.json')
    spec = json.load(open(record))
    del spec['seconds']
    json.dump(spec, open(record, 'w'))

    options['mean_teacher'] = semi + ['model.unsup_weight=0.5']  # another config: trained
    changed = experiment.two_stage(DEMO, ['sup', 'mean_teacher'], 7, str(tmp_path), 2, 2, options,
                                   reuse=True)
    assert changed['sup']['reused'] and changed['sup']['seconds'] is None
    assert not changed['mean_teacher']['reused']
    assert changed['mean_teacher']['seconds'] is not None


def test_config_digest_follows_the_resolved_settings(tmp_path, monkeypatch):
    """A reused run must have the same settings: the digest changes when a base changes what
    the run reads, through a helper variable too; a helper nothing reads does not count."""
    base = tmp_path / 'base.py'
    child = tmp_path / 'child.py'
    base.write_text('steps = [1]\nunused = [2]\ntrain_cfg = dict(max_iters=4)\n')
    child.write_text("_base_ = ['./base.py']\nmodel = dict(type='M', steps=_base_.steps)\n"
                     'fast_roi_align = True\n')
    first = experiment.config_digest(str(child))
    assert experiment.config_digest(str(child)) == first
    edits = ['steps = [3]\nunused = [2]\ntrain_cfg = dict(max_iters=4)\n',  # via model
             'steps = [1]\nunused = [2]\ntrain_cfg = dict(max_iters=5)\n']  # a run key
    for text in edits:
        base.write_text(text)
        assert experiment.config_digest(str(child)) != first, text
    base.write_text('steps = [1]\nunused = [9]\ntrain_cfg = dict(max_iters=4)\n')
    assert experiment.config_digest(str(child)) == first
    child.write_text(child.read_text().replace('True', 'False'))  # ssl_det's own key
    assert experiment.config_digest(str(child)) != first


@pytest.mark.parametrize('path', PROTOCOLS, ids=osp.basename)
def test_protocol_tables_name_configs_of_their_repository(path):
    """The tables live with the benchmarks, as data: every config they name exists in the
    repository that holds them, and every stage-2 run continues a stage 1 they define."""
    from mmengine.config import Config
    protocol = experiment.load_protocol(path)
    assert protocol['root'] == ROOT
    assert {'sup', 'oracle'} <= set(protocol['stage2'])
    for labels, config in protocol['stage2'].values():
        assert labels in protocol['pretrain']
        assert Config.fromfile(osp.join(ROOT, config)).train_cfg.max_iters > 0
    for config in protocol['pretrain'].values():
        assert osp.isfile(osp.join(ROOT, config))


def test_the_package_holds_no_repository_paths():
    """An installed ssl_det has no configs/ folder: the runner takes its paths from a
    protocol file, never from a table of its own."""
    source = open(experiment.__file__).read()
    assert 'configs/' not in source and not hasattr(experiment, 'ROOT')


def test_load_protocol_finds_the_repository_and_checks_the_table(tmp_path):
    (tmp_path / 'tools').mkdir()
    (tmp_path / 'tools' / 'train.py').write_text('')
    (tmp_path / 'benchmarks' / 'protocols').mkdir(parents=True)
    table = tmp_path / 'benchmarks' / 'protocols' / 'mine.json'
    table.write_text(json.dumps(dict(marker='bbox_mAP', pretrain={'10pct': 'a.py'},
                                     stage2={'sup': ['10pct', 'b.py']})))
    protocol = experiment.load_protocol(str(table))
    assert protocol['root'] == str(tmp_path)
    assert protocol['stage2']['sup'] == ('10pct', 'b.py')
    table.write_text(json.dumps(dict(marker='bbox_mAP', stage2={})))
    with pytest.raises(ValueError, match='pretrain'):
        experiment.load_protocol(str(table))


def _benchmark(name):
    """benchmarks/{name}.py as a module."""
    import importlib
    import sys
    if osp.join(ROOT, 'benchmarks') not in sys.path:
        sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
    return importlib.import_module(name)


def _label_efficiency():
    return _benchmark('label_efficiency')


def _label_efficiency_3d():
    return _benchmark('label_efficiency_3d')


def _cfg_options(options):
    """``--cfg-options KEY=VALUE ...`` parsed as tools/train.py parses them."""
    import argparse
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *options]).cfg_options


def _ablation_cases():
    label_efficiency = _label_efficiency()
    for dataset in ('demo', 'deeppcb'):
        for name in sorted(label_efficiency.ABLATIONS):
            if dataset != 'deeppcb' and name in label_efficiency.DEEPPCB_ONLY:
                continue
            yield pytest.param(dataset, name, id=f'{dataset}-{name}')
    for name in sorted(_label_efficiency_3d().ABLATIONS):
        yield pytest.param('demo3d', name, id=f'demo3d-{name}')


def _setting_exists(cfg, key):
    """``key`` (dotted, list indices as numbers) is set in ``cfg``, or its last part is an
    argument of the type its parent builds (a hook's ``max_lag`` left at its default)."""
    import inspect
    from ssl_det import registry
    *parents, leaf = key.split('.')
    node = cfg
    for part in parents:
        if isinstance(node, (list, tuple)):
            if not part.isdigit() or int(part) >= len(node):
                return False
            node = node[int(part)]
        elif part in node:
            node = node[part]
        else:
            return False
    if isinstance(node, (list, tuple)):
        return leaf.isdigit() and int(leaf) < len(node)
    if leaf in node:
        return True
    if 'type' not in node:
        return False
    for name in ('HOOKS', 'OPTIM_WRAPPERS', 'DATA_SAMPLERS', 'TRANSFORMS', 'DATASETS'):
        built = getattr(registry, name).get(node['type'])
        if built is not None:
            return leaf in inspect.signature(built).parameters
    return False


@pytest.mark.parametrize('dataset,name', list(_ablation_cases()))
def test_every_ablation_changes_what_its_name_says(dataset, name):
    """An ablation is a stage-2 run of an hour's protocol: a misspelt option must fail here,
    not after stage 1. Options outside the model name a setting the method's config has or
    an argument of the type it builds (the hook at that index, the sampler); the model with
    its options builds."""
    from mmengine.config import Config
    from ssl_det.registry import MODELS
    from ssl_det.utils import launch
    if dataset == 'demo3d':
        method, options, _ = _label_efficiency_3d().ABLATIONS[name]
        protocol_file = 'demo3d.json'
    else:
        label_efficiency = _label_efficiency()
        method, options, _ = label_efficiency.ABLATIONS[name]
        protocol_file = label_efficiency.DATASETS[dataset]['protocol']
    protocol = experiment.load_protocol(osp.join(ROOT, 'benchmarks', 'protocols', protocol_file))
    cfg = Config.fromfile(osp.join(ROOT, protocol['stage2'][method][1]))
    launch.use_skip_non_finite(cfg)  # as tools/train.py runs it
    parsed = _cfg_options(options)
    for key in parsed:
        if not key.startswith('model.') and key != 'load_from':
            assert _setting_exists(cfg, key), f'{name}: the {method} config has no {key}'
    cfg.merge_from_dict(parsed)
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == cfg.model.type


def test_deeppcb_only_ablations_are_refused_on_the_demo(capsys, monkeypatch):
    """An ablation that rewrites a step of configs/deeppcb/'s pipelines would set a key of
    another step in the demo's: refused before anything is generated or trained."""
    label_efficiency = _label_efficiency()

    def reached(*args, **kwargs):
        raise AssertionError('the demo run went ahead')
    monkeypatch.setattr(label_efficiency, 'ensure_data', reached)
    monkeypatch.setattr(label_efficiency.experiment, 'two_stage', reached)
    with pytest.raises(SystemExit):
        label_efficiency.main(['--dataset', 'demo', '--ablations', 'st_unlabeled_4_whole',
                               '--work-dir', '/nonexistent'])
    assert 'deeppcb only' in capsys.readouterr().err


@pytest.mark.parametrize('stage1_reused', [True, False])
def test_a_stage_one_trained_again_is_not_followed_by_reused_stage_twos(
        stage1_reused, tmp_path, monkeypatch):
    """A stage-2 run continues its stage-1 checkpoint: when stage 1 is trained again (not
    reused), the stage-2 runs of the old checkpoint must not be reused either."""
    calls = []

    def fake_run_once(config, run_dir, cfg_options, root, reuse=False, need_checkpoint=False,
                      marker='bbox_mAP'):
        stage1 = need_checkpoint
        calls.append((stage1, reuse))
        return dict(metrics={}, seconds=1.0, reused=stage1_reused if stage1 else reuse,
                    work_dir=run_dir, config=config)

    monkeypatch.setattr(experiment, 'run_once', fake_run_once)
    monkeypatch.setattr(experiment, 'final_checkpoint', lambda work_dir: 'stage1.pth')
    experiment.two_stage(DEMO, ['sup', 'mean_teacher'], 0, str(tmp_path), options={},
                         reuse=True)
    assert calls[0] == (True, True)  # stage 1 asked to reuse
    assert [reuse for stage1, reuse in calls[1:]] == [stage1_reused, stage1_reused]


def test_run_once_reuses_only_the_same_resolved_config_and_options(tmp_path, monkeypatch):
    """``--reuse`` takes a finished run only when its record holds the same config name,
    options and resolved settings: an edit of the config's contents (same file, same
    options) or other options train again; unchanged, the finished run is reused."""
    trained = []

    def fake_train(config, work_dir, root, cfg_options=None, quiet=False, marker='bbox_mAP'):
        trained.append(list(cfg_options))
        metrics = {'coco/bbox_mAP': 0.1 * len(trained)}
        scalars = osp.join(work_dir, f'run{len(trained)}', 'vis_data', 'scalars.json')
        os.makedirs(osp.dirname(scalars))
        with open(scalars, 'w') as f:
            f.write(json.dumps(metrics) + '\n')
        return metrics, 2.0

    monkeypatch.setattr(experiment, 'train', fake_train)
    config = tmp_path / 'cfg.py'
    config.write_text('train_cfg = dict(max_iters=4)\n')
    run_dir = str(tmp_path / 'run')

    def run(options):
        return experiment.run_once('cfg.py', run_dir, options, str(tmp_path), reuse=True)

    assert not run(['randomness.seed=0'])['reused'] and len(trained) == 1
    again = run(['randomness.seed=0'])
    assert again['reused'] and len(trained) == 1
    assert again['metrics'] == {'coco/bbox_mAP': 0.1} and again['seconds'] == 2.0
    assert not run(['randomness.seed=1'])['reused'] and len(trained) == 2  # other options
    config.write_text('train_cfg = dict(max_iters=5)\n')  # same file and options, new contents
    changed = run(['randomness.seed=1'])
    assert not changed['reused'] and len(trained) == 3
    assert changed['metrics'] == {'coco/bbox_mAP': pytest.approx(0.3)}
    assert run(['randomness.seed=1'])['reused'] and len(trained) == 3

    # a default that moved into the config: the run that set it by option resolves to the
    # same settings, so it is reused under the new config with the same options (not under
    # other settings)
    config.write_text('train_cfg = dict(max_iters=5)\nmodel = dict(grid=2)\n')
    assert not run(['randomness.seed=1', 'model.grid=3'])['reused'] and len(trained) == 4
    config.write_text('train_cfg = dict(max_iters=5)\nmodel = dict(grid=3)\n')
    moved = run(['randomness.seed=1', 'model.grid=3'])
    assert moved['reused'] and moved['metrics'] == {'coco/bbox_mAP': pytest.approx(0.4)}
    assert not run(['randomness.seed=1', 'model.grid=2'])['reused'] and len(trained) == 5


def test_a_shorter_run_moves_the_lr_step_with_its_iterations():
    """iteration_options: a stage-2 run of 400 iterations instead of the config's 1000 has
    its LR step at 75% of the 400 (not the config's 750) and its schedule ends with it."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, DEMO['stage2']['mean_teacher'][1]))
    assert cfg.train_cfg.max_iters == 1000 and cfg.param_scheduler[1].milestones == [750]
    cfg.merge_from_dict(_cfg_options(experiment.iteration_options(400)))
    assert cfg.train_cfg.max_iters == 400 and cfg.train_cfg.val_interval == 400
    assert cfg.param_scheduler[1].milestones == [300]
    assert cfg.param_scheduler[1].end == 400


def test_demo_table_rows_read_each_networks_metrics():
    """tools/demo.py's table: the supervised row is the supervised run's metrics, a
    teacher-student run gives a teacher row (``teacher/...`` keys, with the run's time) and
    a student row (``student/...`` keys)."""
    from tools import demo as demo_tool

    def run(name, metrics, seconds):
        return dict(metrics=metrics, seconds=seconds, work_dir=f'w/{name}')

    results = {
        'pretrain_10pct': run('pre', {'coco/bbox_mAP': 0.1, 'coco/bbox_mAP_50': 0.2}, 60.0),
        'sup': run('sup', {'coco/bbox_mAP': 0.3, 'coco/bbox_mAP_50': 0.4}, 120.0),
        'soft_teacher': run('st', {'teacher/coco/bbox_mAP': 0.5, 'teacher/coco/bbox_mAP_50': 0.6,
                                   'student/coco/bbox_mAP': 0.45,
                                   'student/coco/bbox_mAP_50': 0.55}, 180.0)}
    rows = demo_tool.table(results, ['soft_teacher'])
    assert rows == [
        ('stage 1: supervised', '10% labeled', 0.1, 0.2, 60.0, 'w/pre'),
        ('stage 2: supervised', '10% labeled', 0.3, 0.4, 120.0, 'w/sup'),
        ('stage 2: soft teacher teacher', '10% labeled + 90% unlabeled', 0.5, 0.6, 180.0,
         'w/st'),
        ('stage 2: soft teacher student', '10% labeled + 90% unlabeled', 0.45, 0.55, None,
         'w/st')]


def test_label_efficiency_keeps_each_seeds_values_and_the_gap_from_the_means(
        tmp_path, monkeypatch):
    """benchmarks/label_efficiency.py: per seed, gap_closed = (semi - sup) / (oracle - sup)
    with the teacher's mAP as semi; every value stays under its own seed; the top-level
    gap_closed comes from the means over seeds (not the mean of the per-seed gaps)."""
    label_efficiency = _label_efficiency()
    maps = {0: dict(sup=0.2, oracle=0.6, teacher=0.4, student=0.3),
            1: dict(sup=0.3, oracle=0.5, teacher=0.45, student=0.35)}

    def fake_two_stage(protocol, runs, seed, work_dir, *args, **kwargs):
        m = maps[seed]
        return dict(sup=dict(metrics={'coco/bbox_mAP': m['sup']}, seconds=60.0),
                    oracle=dict(metrics={'coco/bbox_mAP': m['oracle']}, seconds=60.0),
                    mean_teacher=dict(metrics={'teacher/coco/bbox_mAP': m['teacher'],
                                               'student/coco/bbox_mAP': m['student']},
                                      seconds=120.0))

    monkeypatch.setattr(label_efficiency, 'ensure_data', lambda root: None)
    monkeypatch.setattr(label_efficiency.experiment, 'two_stage', fake_two_stage)
    out = tmp_path / 'le.json'
    label_efficiency.main(['--seeds', '1', '0', '--work-dir', str(tmp_path), '--out', str(out)])
    result = json.loads(out.read_text())
    assert result['seeds'] == [1, 0] and result['method'] == 'mean_teacher'
    per_seed = result['per_seed']
    assert per_seed['sup'] == [0.3, 0.2] and per_seed['oracle'] == [0.5, 0.6]
    assert per_seed['semi'] == [0.45, 0.4] and per_seed['semi_student'] == [0.35, 0.3]
    assert per_seed['gap_closed'] == [pytest.approx(0.75), pytest.approx(0.5)]
    assert result['semi'] == pytest.approx(0.425)
    assert result['semi_student'] == pytest.approx(0.325)
    assert result['gap_closed'] == pytest.approx((0.425 - 0.25) / (0.55 - 0.25))


def test_demo_summary_reads_teacher_and_student_and_the_supervised_run(tmp_path, monkeypatch):
    """tools/demo.py's demo_results.json: per method the teacher's and the student's mAP
    (their own keys) and the teacher's gain over the supervised stage-2 run (not stage 1)."""
    from tools import demo as demo_tool

    def fake_two_stage(protocol, runs, seed, work_dir, *args, **kwargs):
        os.makedirs(osp.join(work_dir, f'seed{seed}'), exist_ok=True)

        def run(name, prefix, value):
            return dict(metrics={f'{prefix}coco/bbox_mAP': value,
                                 f'{prefix}coco/bbox_mAP_50': value + 0.1},
                        seconds=60.0, work_dir=osp.join(work_dir, name))
        st = run('st', 'teacher/', 0.5)
        st['metrics'].update({'student/coco/bbox_mAP': 0.45, 'student/coco/bbox_mAP_50': 0.55})
        return dict(pretrain_10pct=run('pre', '', 0.1), sup=run('sup', '', 0.3), soft_teacher=st)

    monkeypatch.setattr(demo_tool, 'ensure_data', lambda *args: None)
    monkeypatch.setattr(demo_tool.experiment, 'two_stage', fake_two_stage)
    demo_tool.main(['--seed', '3', '--work-dir', str(tmp_path)])
    saved = json.loads((tmp_path / 'seed3' / 'demo_results.json').read_text())
    assert saved['sup'] == pytest.approx(0.3)
    summary = saved['methods']['soft_teacher']
    assert summary['teacher'] == pytest.approx(0.5)
    assert summary['student'] == pytest.approx(0.45)
    assert summary['gain'] == pytest.approx(0.2)
