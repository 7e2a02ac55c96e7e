"""PreciseBNHook: the teacher's BatchNorm statistics re-estimated on the strong unlabeled
views, once the EMA update is done and before the checkpoint and the validation read them."""
import copy
import glob
import json
import os.path as osp
import re
import sys
import tempfile
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from torch.utils.data import DataLoader

from demo_helpers import ROOT, semi_3d_overrides
from ssl_det.datasets.demo_data_3d import make_demo_data_3d
from ssl_det.engine.hooks.precise_bn_hook import (PreciseBNHook, bn_layers, estimate_bn_stats,
                                                  frozen_bn_names, named_bn_layers)
from tools import train as train_tool

CFG = osp.join(ROOT, 'configs/point_cloud/hssda_pillar-center_demo3d_semi-10pct.py')


def test_estimate_is_the_average_of_the_batch_statistics_and_restores_the_module():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    net.train()  # a module in training mode must come back in training mode
    bn = net[1]
    bn.running_mean.fill_(7.0)
    batches = [torch.randn(5, 3) * (k + 1) + k for k in range(3)]
    count = estimate_bn_stats(net, batches, lambda x: net(x))
    assert count == 3 and net.training and bn.training and bn.momentum == 0.1
    feats = [net[0](x).detach() for x in batches]
    torch.testing.assert_close(bn.running_mean, torch.stack([f.mean(0) for f in feats]).mean(0))
    torch.testing.assert_close(bn.running_var,
                               torch.stack([f.var(0, unbiased=True) for f in feats]).mean(0))
    # the layers run in training mode, the rest in eval mode (e.g. dropout off)
    seen = []
    net[2].register_forward_hook(lambda m, a, o: seen.append((m.training, bn.training)))
    estimate_bn_stats(net, batches[:1], lambda x: net(x))
    assert seen == [(False, True)]
    before = bn.running_mean.clone()
    assert estimate_bn_stats(net, [], lambda x: net(x)) == 0  # no batch: nothing changes
    torch.testing.assert_close(bn.running_mean, before)


class _Tiny(nn.Module):
    """A supervised 'detector': Linear, BatchNorm, Linear, BatchNorm."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 4),
                                 nn.BatchNorm1d(4))
        self.data_preprocessor = lambda batch, training: batch

    def _forward(self, inputs, data_samples):
        return self.net(inputs)


def test_frozen_batchnorm_layers_keep_their_statistics():
    """A layer the training keeps in eval mode (mmdet's norm_eval) keeps its statistics and
    normalises with them while the others are estimated; the hook finds such layers on a
    supervised model."""
    torch.manual_seed(0)
    model = _Tiny()
    model.train()
    model.net[1].eval()  # frozen, as ResNet(norm_eval=True).train() leaves its BatchNorm
    assert frozen_bn_names(model) == {'net.1'} and frozen_bn_names(model.eval()) == set()
    model.train()
    model.net[1].eval()
    model.net[1].running_mean.fill_(5.0)
    data = [dict(inputs=torch.randn(3) * 2 + 1) for _ in range(6)]
    runner = SimpleNamespace(model=model, rank=0, train_dataloader=SimpleNamespace(
        dataset=data, batch_size=2, sampler=None, batch_sampler=None,
        collate_fn=lambda samples: dict(inputs=torch.stack([s['inputs'] for s in samples]),
                                        data_samples=None)))
    PreciseBNHook(num_samples=6).update(runner)
    assert torch.all(model.net[1].running_mean == 5.0) and not model.net[1].training
    assert model.net[3].training
    # the other layer's statistics: those of its input with the frozen layer in eval mode
    order = np.random.default_rng(0).permutation(6)
    feats = [model.net[2](model.net[1].eval()(model.net[0](
        torch.stack([data[i]['inputs'] for i in order[k:k + 2]])))) for k in range(0, 6, 2)]
    torch.testing.assert_close(model.net[3].running_mean,
                               torch.stack([f.mean(0) for f in feats]).mean(0))


def test_it_runs_where_the_loop_validates_and_at_the_last_iteration():
    def runner(done, interval=4, val=True, max_iters=10):
        return SimpleNamespace(iter=done - 1, max_iters=max_iters,
                               train_loop=SimpleNamespace(val_interval=interval, val_begin=1),
                               _val_loop=object() if val else None)
    assert [d for d in range(1, 11) if PreciseBNHook.validates_after(runner(d))] == [4, 8, 10]
    assert [d for d in range(1, 11)
            if PreciseBNHook.validates_after(runner(d, val=False))] == [10]


def test_it_refuses_what_it_cannot_estimate_at_the_start():
    plain = SimpleNamespace(model=nn.Linear(2, 2))
    PreciseBNHook().before_train(plain)  # a supervised model: its own statistics
    with pytest.raises(ValueError, match='has no teacher'):
        PreciseBNHook(student=True).before_train(plain)
    labeled = [dict(inputs=dict(sup=dict(points=torch.zeros(1, 4)), unsup_student=None))]
    model = nn.Module()
    model.teacher = nn.Linear(2, 2)
    runner = SimpleNamespace(model=model, train_dataloader=SimpleNamespace(dataset=labeled))
    with pytest.raises(ValueError, match="fills the 'unsup_student' branch"):
        PreciseBNHook(branch='unsup_student').before_train(runner)
    PreciseBNHook(branch='sup').before_train(runner)
    model.strong_bn_stats = True  # the default follows the student's statistics: both
    with pytest.raises(ValueError, match="fills the 'unsup_student' branch"):
        PreciseBNHook().before_train(runner)
    with pytest.raises(ValueError, match="fills the 'unsup_student' branch"):
        PreciseBNHook(branch=['sup', 'unsup_student']).before_train(runner)
    model.joint_batch = True  # one pass over both branches: forwarded together, not refused
    with pytest.raises(ValueError, match="fills the 'unsup_student' branch"):
        PreciseBNHook(branch=['sup', 'unsup_student']).before_train(runner)
    for bad in ([], ['sup', 'sup'], [1]):
        with pytest.raises(ValueError, match='branch must be'):
            PreciseBNHook(branch=bad)


def test_the_default_branches_are_those_that_update_the_students_statistics():
    def runner(**flags):
        model = nn.Module()
        model.teacher = nn.Linear(1, 1)
        for key, value in flags.items():
            setattr(model, key, value)
        return SimpleNamespace(model=model)
    hook = PreciseBNHook()
    assert hook.branches(runner(strong_bn_stats=True)) == ('sup', 'unsup_student')
    assert hook.branches(runner(strong_bn_stats=True, labeled_bn_stats=False)) == (
        'unsup_student', )
    assert hook.branches(runner(strong_bn_stats=False)) == ('sup', )  # 2D's default
    assert PreciseBNHook(branch='unsup_student').branches(runner()) == ('unsup_student', )


def test_several_branches_give_one_batch_each_in_turn_as_many_of_each():
    """A training batch of 1 labeled and 2 unlabeled samples: the labeled branch's batches
    hold 1 view, the strong branch's 2, alternating, as many of each; the 3 labeled samples
    are cycled to fill their share, each from its own source."""
    labeled = [dict(inputs=dict(sup=('L', i), unsup_student=None), data_samples=dict(
        sup=i, unsup_student=None)) for i in range(3)]
    unlabeled = [dict(inputs=dict(sup=None, unsup_student=('U', i)), data_samples=dict(
        sup=None, unsup_student=i)) for i in range(20)]
    sampler = SimpleNamespace(num_per_source=(1, 2))
    model = nn.Module()
    model.teacher = nn.Linear(2, 2)
    runner = SimpleNamespace(rank=0, model=model, train_dataloader=SimpleNamespace(
        dataset=SimpleNamespace(datasets=[labeled, unlabeled]), sampler=sampler,
        batch_sampler=SimpleNamespace(sampler=None), batch_size=3))
    hook = PreciseBNHook(num_samples=10, branch=('sup', 'unsup_student'))
    items = list(hook.batches(runner))
    assert [b for b, _ in items] == ['sup', 'unsup_student'] * 5
    sup = [batch['inputs']['sup'] for b, batch in items if b == 'sup']
    strong = [batch['inputs']['unsup_student'] for b, batch in items if b != 'sup']
    assert all(len(x) == 1 and x[0][0] == 'L' for x in sup)
    assert all(len(x) == 2 and x[0][0] == x[1][0] == 'U' for x in strong)
    first = [x[0][1] for x in sup]
    assert sorted(first[:3]) == [0, 1, 2] and first[3:] == first[:2]  # cycled
    assert len({x[1] for batch in strong for x in batch}) == 10  # 10 distinct scenes
    assert [batch['data_samples']['sup'] for b, batch in items if b == 'sup'] == [
        [i] for i in first]
    # the strong branch alone: 10 views in 5 batches, the same subset
    alone = list(PreciseBNHook(num_samples=10, branch='unsup_student').batches(runner))
    assert [b['inputs']['unsup_student'] for _, b in alone] == strong


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('precise_bn'))
    make_demo_data_3d(root, num_train=20, num_val=3, seed=1, verbose=False)
    return root + '/'


def test_the_teacher_is_validated_and_saved_with_the_strong_views_statistics(scenes, tmp_path,
                                                                            monkeypatch):
    """Three iterations of the 3D HSSDA-style config with the hook. The strong view here is a
    fixed rotation and scaling (no random step), the weak view the scene itself, so the two
    branches' statistics differ and an estimate can be repeated exactly."""
    cfg = Config.fromfile(CFG)
    cfg.merge_from_dict(semi_3d_overrides(scenes, iters=3))
    keys = cfg.view_meta_keys
    pcr = cfg.point_cloud_range
    pack = dict(type='PackPointCloudInputs', meta_keys=keys)
    strong = [dict(type='GlobalRotScaleTrans', rot_range=[0.3, 0.3], scale_range=[1.3, 1.3]),
              dict(type='PointsRangeFilter', point_cloud_range=pcr), pack]
    weak = [dict(type='PointsRangeFilter', point_cloud_range=pcr), pack]
    unlabeled = cfg.train_dataloader.dataset.datasets[1]
    unlabeled.pipeline[1].update(unsup_teacher=weak, unsup_student=strong)
    cfg.custom_hooks.append(dict(type='PreciseBNHook', num_samples=8, branch='unsup_student'))
    path = str(tmp_path / 'cfg.py')
    cfg.dump(path)
    runner = train_tool.build_runner(train_tool.parse_args([path, '--work-dir', str(tmp_path)]))
    runner.train()
    model = runner.model
    hook = next(h for h in runner.hooks if isinstance(h, PreciseBNHook))
    teacher = [(m.running_mean.clone(), m.running_var.clone()) for m in bn_layers(model.teacher)]
    assert len(teacher) >= 5  # the pillar net's BatchNorm1d and the 2d ones after it

    # the checkpoint holds the re-estimated statistics (the hook runs before it is saved)
    state = torch.load(str(tmp_path / 'iter_3.pth'), weights_only=True)['state_dict']
    names = [n for n, _ in named_bn_layers(model.teacher)]
    for name, (mean, var) in zip(names, teacher):
        torch.testing.assert_close(state[f'teacher.{name}.running_mean'], mean)
        torch.testing.assert_close(state[f'teacher.{name}.running_var'], var)
    log = open(glob.glob(str(tmp_path / '*' / '*.log'))[0]).read()
    assert re.search(r"teacher's \d+ BatchNorm layers re-estimated on 4 batches of "
                     r"'unsup_student' views", log)
    assert log.index('re-estimated') < log.index('teacher/ap3d/mAP')  # before validation

    # an estimate of our own on the same scenes: the strong views, 2 a batch (the training
    # batch of 4 holds 2 unlabeled scenes), from the trained weights alone
    subset = hook.loader(runner).dataset
    assert len(subset) == 8

    def estimate(branch):
        detector = copy.deepcopy(model.teacher)
        loader = DataLoader(subset, batch_size=2, collate_fn=lambda samples: {
            key: {branch: [s[key][branch] for s in samples]} for key in samples[0]})

        def forward(batch):
            data = model.data_preprocessor(batch, True)
            detector._forward(data['inputs'][branch], data['data_samples'][branch])
        estimate_bn_stats(detector, loader, forward)
        return [(m.running_mean, m.running_var) for m in bn_layers(detector)]

    for (mean, var), (own_mean, own_var) in zip(teacher, estimate('unsup_student')):
        torch.testing.assert_close(mean, own_mean)
        torch.testing.assert_close(var, own_var)
    weak_mean = estimate('unsup_teacher')[0][0]
    assert not torch.allclose(teacher[0][0], weak_mean, rtol=1e-3)

    # called again: the same teacher statistics, the student's and the random streams
    # untouched
    for m in bn_layers(model.student):
        m.running_mean.fill_(3.0)  # a re-estimate of the student would replace these
    student = [m.running_mean.clone() for m in bn_layers(model.student)]
    rng = np.random.get_state()[1].copy()
    torch_rng = torch.get_rng_state().clone()
    hook.update(runner)
    for (mean, _), m in zip(teacher, bn_layers(model.teacher)):
        torch.testing.assert_close(m.running_mean, mean)
    for before, m in zip(student, bn_layers(model.student)):
        assert torch.equal(m.running_mean, before)
    assert np.array_equal(np.random.get_state()[1], rng)
    assert torch.equal(torch.get_rng_state(), torch_rng)
    hook.student = True  # student=True: the student's are re-estimated too
    hook.update(runner)
    assert all(not torch.equal(m.running_mean, before)
               for before, m in zip(student, bn_layers(model.student)))

    # benchmarks/precise_bn_3d.py on the run: the saved teacher validated before and after
    # the hook's update. The saved statistics are already the hook's, so they do not move;
    # in a copy whose teacher variances were scaled by 4, the update brings them back.
    sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
    import precise_bn_3d
    scaled = tmp_path / 'scaled'
    scaled.mkdir()
    for key in state:
        if key.startswith('teacher.') and key.endswith('running_var'):
            state[key] = state[key] * 4
    ckpt = torch.load(str(tmp_path / 'iter_3.pth'), weights_only=False)
    ckpt['state_dict'] = state
    torch.save(ckpt, str(scaled / 'iter_3.pth'))
    (scaled / 'last_checkpoint').write_text(str(scaled / 'iter_3.pth'))
    (scaled / 'cfg.py').write_text(open(path).read())
    out = tmp_path / 'precise_bn.json'
    scratch = tmp_path / 'scratch'  # its runner's work dir goes here and is removed after
    scratch.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(scratch))
    rows = precise_bn_3d.main([str(tmp_path), str(scaled), '--num-samples', '8',
                               '--branch', 'unsup_student', '--out', str(out)])
    assert json.load(open(out))['runs'] == rows and len(rows) == 2
    assert rows[0]['checkpoint'].endswith('iter_3.pth')
    assert rows[0]['bn_var_ratio_median'] == pytest.approx(1.0, abs=1e-3)
    assert rows[1]['bn_var_ratio_median'] == pytest.approx(0.25, abs=1e-3)
    assert rows[1]['after'] == rows[0]['after']
    assert list(scratch.iterdir()) == []
    for row in rows:
        assert row['gain'] == pytest.approx(row['after']['teacher/ap3d/mAP']
                                            - row['before']['teacher/ap3d/mAP'], abs=1e-4)


def _saved_bn(path: str, module: nn.Module, prefix: str) -> list:
    state = torch.load(path, weights_only=True)['state_dict']
    names = [n for n, _ in named_bn_layers(module)]
    return [(state[f'{prefix}{n}.running_mean'], state[f'{prefix}{n}.running_var'])
            for n in names]


def _fixed_view(pcr, pack):
    return [dict(type='GlobalRotScaleTrans', rot_range=[0.3, 0.3], scale_range=[1.3, 1.3]),
            dict(type='PointsRangeFilter', point_cloud_range=pcr), pack]


@pytest.mark.parametrize('joint', [False, True])
def test_the_teacher_is_re_estimated_on_the_training_mixture(scenes, tmp_path, joint):
    """By default the branches that update the student's statistics in training, here
    ``['sup', 'unsup_student']``: the teacher's statistics are the average over
    alternating batches of labeled views (the 2 labeled scenes cycled) and strong views, 2 a
    batch each (as the training batch of 4 holds them). A ``joint_batch`` student (the
    config's default) normalises one batch of each together in training: the hook forwards
    them concatenated, labeled first. Both views are fixed transforms here, so an estimate
    of our own is exact; it differs from either branch alone and from the other mode."""
    cfg = Config.fromfile(CFG)
    cfg.merge_from_dict(semi_3d_overrides(scenes, iters=3))
    cfg.model.joint_batch = joint
    pcr = cfg.point_cloud_range
    labeled, unlabeled = cfg.train_dataloader.dataset.datasets
    labeled.pipeline = [dict(type='LoadPointsFromFile')] + _fixed_view(
        pcr, dict(type='ObjectRangeFilter', point_cloud_range=pcr)) + [
        dict(type='MultiBranch', branch_field=cfg.branch_field,
             sup=dict(type='PackPointCloudInputs'))]
    pack = dict(type='PackPointCloudInputs', meta_keys=cfg.view_meta_keys)
    unlabeled.pipeline[1].update(
        unsup_teacher=[dict(type='PointsRangeFilter', point_cloud_range=pcr), pack],
        unsup_student=_fixed_view(pcr, pack))
    cfg.custom_hooks.append(dict(type='PreciseBNHook', num_samples=8))  # the default
    path = str(tmp_path / 'cfg.py')
    cfg.dump(path)
    runner = train_tool.build_runner(train_tool.parse_args([path, '--work-dir', str(tmp_path)]))
    runner.train()
    model = runner.model
    saved = _saved_bn(str(tmp_path / 'iter_3.pth'), model.teacher, 'teacher.')
    log = open(glob.glob(str(tmp_path / '*' / '*.log'))[0]).read()
    assert re.search(r"re-estimated on %d batches of 'sup' and 'unsup_student' views%s"
                     % ((4, r' \(one batch of each a pass') if joint else (8, '')), log)

    sources = runner.train_dataloader.dataset.datasets
    assert len(sources[0]) == 2  # 4 batches of 2 labeled views: each scene 4 times

    def views(dataset, branch):
        order = np.random.default_rng(0).permutation(len(dataset))
        return [[dataset[int(i)] for i in np.resize(order, 8)[k:k + 2]] for k in range(0, 8, 2)]

    def estimate(branches, together=False):
        detector = copy.deepcopy(model.teacher)
        per_branch = [[(b, {key: {b: [s[key][b] for s in batch]} for key in batch[0]})
                       for batch in views(src, b)] for b, src in zip(branches, sources)
                      if b is not None]
        ordered = [item for group in zip(*per_branch) for item in group]

        def forward(item):
            branch, batch = item
            data = model.data_preprocessor(batch, True)
            detector._forward(data['inputs'][branch], data['data_samples'][branch])

        def forward_together(group):  # one pass over the labeled then the strong views
            points, samples = [], []
            for branch, batch in group:
                data = model.data_preprocessor(batch, True)
                points += data['inputs'][branch]['points']
                samples += data['data_samples'][branch]
            detector._forward(dict(points=points), samples)
        if together:
            estimate_bn_stats(detector, list(zip(*per_branch)), forward_together)
        else:
            estimate_bn_stats(detector, ordered, forward)
        return [(m.running_mean, m.running_var) for m in bn_layers(detector)]

    for (mean, var), (own_mean, own_var) in zip(
            saved, estimate(['sup', 'unsup_student'], together=joint)):
        torch.testing.assert_close(mean, own_mean)
        torch.testing.assert_close(var, own_var)
    other = estimate(['sup', 'unsup_student'], together=not joint)
    assert not torch.allclose(saved[0][1], other[0][1], rtol=1e-3)
    for alone in (['sup', None], [None, 'unsup_student']):
        assert not torch.allclose(saved[0][0], estimate(alone)[0][0], rtol=1e-3)


def test_a_supervised_model_is_re_estimated_on_its_training_batches(scenes, tmp_path):
    """Without a teacher the model's own statistics are re-estimated, on num_samples of its
    training samples in training batches (a fixed transform here, so exactly)."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs/point_cloud/pillar-center_demo3d_sup-10pct.py'))
    pcr = cfg.point_cloud_range
    cfg.train_dataloader.dataset.pipeline = [dict(type='LoadPointsFromFile')] + _fixed_view(
        pcr, dict(type='PackPointCloudInputs'))
    cfg.train_dataloader.dataset.ann_file = 'train.json'  # 20 scenes: 6 of them, in 3 batches
    opts = {'experiment_name': f'test_{uuid.uuid4().hex[:8]}', 'train_cfg.max_iters': 2,
            'train_cfg.val_interval': 2, 'default_hooks.checkpoint.interval': 2,
            'train_dataloader.batch_size': 2}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts.update({f'{loader}.dataset.data_root': scenes, f'{loader}.num_workers': 0,
                     f'{loader}.persistent_workers': False})
    cfg.merge_from_dict(opts)
    cfg.custom_hooks = cfg.get('custom_hooks', []) + [dict(type='PreciseBNHook', num_samples=6)]
    path = str(tmp_path / 'cfg.py')
    cfg.dump(path)
    runner = train_tool.build_runner(train_tool.parse_args([path, '--work-dir', str(tmp_path)]))
    runner.train()
    model = runner.model
    saved = _saved_bn(str(tmp_path / 'iter_2.pth'), model, '')
    log = open(glob.glob(str(tmp_path / '*' / '*.log'))[0]).read()
    assert re.search(r"the model's \d+ BatchNorm layers re-estimated on 3 batches of "
                     r"training", log)
    dataset = runner.train_dataloader.dataset
    order = np.random.default_rng(0).permutation(len(dataset))[:6]
    collate = runner.train_dataloader.collate_fn
    batches = [collate([dataset[int(i)] for i in order[k:k + 2]]) for k in range(0, 6, 2)]
    detector = copy.deepcopy(model)

    def forward(batch):
        data = model.data_preprocessor(batch, True)
        detector._forward(data['inputs'], data['data_samples'])
    estimate_bn_stats(detector, batches, forward)
    for (mean, var), m in zip(saved, bn_layers(detector)):
        torch.testing.assert_close(mean, m.running_mean)
        torch.testing.assert_close(var, m.running_var)
