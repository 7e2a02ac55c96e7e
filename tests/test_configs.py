"""Every shipped config parses, and its model builds (no weights are loaded)."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from demo_helpers import ROOT
from ssl_det.registry import HOOKS, MODELS

# every config but the bases and the data-only files (configs/deeppcb/data.py: no model)
CONFIGS = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p and osp.basename(p) != 'data.py')


def test_configs_found():
    assert len(CONFIGS) >= 15


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, ROOT))
def test_config_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'ssl_det'
    model = MODELS.build(cfg.model)
    if cfg.model.type == 'TeacherStudent':
        assert cfg.val_cfg.type == 'TeacherStudentValLoop'
        hooks = [HOOKS.build(h) for h in cfg.custom_hooks]
        assert any(type(h).__name__ == 'MeanTeacherHook' for h in hooks)
        sampler = cfg.train_dataloader.sampler
        assert sampler.type == 'MultiSourceSampler'
        assert sampler.batch_size == cfg.train_dataloader.batch_size
        assert model.teacher is not model.student


DEEPPCB = sorted(glob.glob(osp.join(ROOT, 'configs', 'deeppcb', '*_*.py')))


def test_own_data_is_set_in_one_place(tmp_path):
    """A user's copy of configs/deeppcb changes its data by rewriting data.py alone: data
    root, classes, annotation files and scale reach every run's dataloaders, evaluator, the
    detector's and the pseudo-label policy's num_classes."""
    import shutil
    configs = tmp_path / 'configs'
    shutil.copytree(osp.join(ROOT, 'configs'), configs)
    (configs / 'deeppcb' / 'data.py').write_text(
        "data_root = 'data/mine/'\n"
        "classes = ('scratch', 'dent', 'stain')\n"
        "image_prefix = 'pictures/'\n"
        "labeled_ann_file = 'labeled.json'\n"
        "unlabeled_ann_file = 'unlabeled.json'\n"
        "val_ann_file = 'val.json'\n"
        "all_labeled_ann_file = 'all.json'\n"
        "image_size = (400, 300)\n"
        "crop_size = (160, 160)\n")
    names = [osp.basename(p) for p in DEEPPCB if not p.endswith('deeppcb_base.py')]
    assert len(names) == 6
    for name in names:
        cfg = Config.fromfile(str(configs / 'deeppcb' / name))
        semi = cfg.model.type != 'FasterRCNN'
        detector = cfg.model.detector if semi else cfg.model
        assert detector.roi_head.bbox_head.num_classes == 3, name
        if semi:
            assert cfg.model.pseudo_label.num_classes == 3
        train = cfg.train_dataloader.dataset
        leaves = train.datasets if semi else [train]
        expected = ['labeled.json', 'unlabeled.json'] if semi else \
            ['all.json' if 'sup-all' in name else 'labeled.json']
        assert [d.ann_file for d in leaves] == expected, name
        for dataset in leaves + [cfg.val_dataloader.dataset, cfg.test_dataloader.dataset]:
            assert dataset.data_root == 'data/mine/'
            assert dataset.metainfo['classes'] == ('scratch', 'dent', 'stain')
            assert dataset.data_prefix['img'] == 'pictures/'
            steps = {s['type']: s for s in dataset.pipeline}
            assert steps['Resize']['scale'] == (400, 300), name
        assert cfg.val_dataloader.dataset.ann_file == 'val.json'
        assert cfg.val_evaluator.ann_file == 'data/mine/val.json'
        crops = [s for d in leaves for s in d.pipeline if s['type'] == 'RandomCrop']
        assert crops and all(s['crop_size'] == (160, 160) for s in crops), name


# (supervised config, semi config, unlabeled samples an iteration beside the labeled 4)
SEMI_BATCHES = [
    ('deeppcb/faster-rcnn_r18_fpn_deeppcb_sup.py',
     f'deeppcb/{name}_faster-rcnn_r18_fpn_deeppcb_semi.py', 12)
    for name in ('mean-teacher', 'soft-teacher')] + [
    ('point_cloud/pillar-center_demo3d_sup-10pct_stage2.py',
     f'point_cloud/{name}_pillar-center_demo3d_semi-10pct.py', unlabeled)
    for name, unlabeled in (('hssda', 8), ('mean-teacher', 4))]


@pytest.mark.parametrize('sup_name,semi_name,unlabeled', SEMI_BATCHES)
def test_semi_runs_see_the_supervised_runs_labeled_batch(sup_name, semi_name, unlabeled):
    """The protocols compare like with like: a teacher-student stage 2 takes as many labeled
    crops or scenes an iteration as the supervised stage 2 (4), the same labeled split and
    iterations, and its unlabeled ones on top (12 DeepPCB crops; 8 scenes for the 3D demo's
    HSSDA-style config, 4 for its mean teacher)."""
    sup = Config.fromfile(osp.join(ROOT, 'configs', sup_name))
    semi = Config.fromfile(osp.join(ROOT, 'configs', semi_name))
    sampler = semi.train_dataloader.sampler
    from ssl_det.datasets.multi_source_sampler import split_batch
    labeled, got = split_batch(sampler.batch_size, sampler.source_ratio)
    assert labeled == sup.train_dataloader.batch_size == 4
    assert got == unlabeled
    assert semi.train_dataloader.batch_size == sampler.batch_size
    assert semi.train_dataloader.dataset.datasets[0].ann_file == \
        sup.train_dataloader.dataset.ann_file
    assert semi.train_cfg.max_iters == sup.train_cfg.max_iters


GT_SAMPLE = sorted(glob.glob(osp.join(ROOT, 'configs', 'point_cloud', '*_gt-sample.py')))


@pytest.mark.parametrize('path', GT_SAMPLE, ids=osp.basename)
def test_gt_sampling_configs_add_the_database_step_and_nothing_else(path):
    """The 3D demo's GT-sampling protocol (benchmarks/protocols/demo3d_gt-sample.json) differs
    from the default one by ObjectSample alone, first after loading in every labeled
    pipeline: the labeled split's database for the 10% and semi-supervised runs, every train
    frame's for the oracle; the unlabeled scenes, model and schedule are the default's."""
    from ssl_det.datasets.demo_data_3d import DEMO_GT_DATABASES
    gts = Config.fromfile(path)
    base = Config.fromfile(path.replace('_gt-sample.py', '.py'))
    database = DEMO_GT_DATABASES[1 if 'sup-all' in path else 0][1]
    assert gts.model == base.model and gts.train_cfg == base.train_cfg
    gts_data, base_data = gts.train_dataloader.dataset, base.train_dataloader.dataset
    leaves = list(zip(gts_data.get('datasets', [gts_data]),
                      base_data.get('datasets', [base_data])))
    assert len(leaves) == (2 if 'semi' in path else 1)
    sampler = dict(type='ObjectSample', db_info_file=f'data/demo3d/{database}/dbinfos.json',
                   classes=('Car', 'Pedestrian', 'Cyclist'),
                   sample_groups=dict(Car=12, Pedestrian=6, Cyclist=6),
                   min_points=dict(Car=5, Pedestrian=5, Cyclist=5))
    labeled, theirs = leaves[0]
    assert labeled.pipeline == theirs.pipeline[:1] + [sampler] + theirs.pipeline[1:]
    assert labeled.ann_file == theirs.ann_file
    for mine, other in leaves[1:]:  # the unlabeled scenes
        assert mine == other and 'ObjectSample' not in str(mine.pipeline)
    if base.get('load_from'):  # stage 2 continues the GT-sampling stage 1
        stage1 = 'sup-all' if 'sup-all' in path else 'sup-10pct'
        assert gts.load_from.endswith(f'pillar-center_demo3d_{stage1}_gt-sample/iter_1200.pth')


def test_gt_sampling_on_the_whole_student_input_pastes_the_labeled_pipelines_objects():
    """The `_gt-sample-all` config is the `_gt-sample` one with labeled_paste alone: the same
    database and classes as its labeled pipeline's ObjectSample, inside the point-cloud
    range, the counts ObjectSample adds to a labeled scene on average."""
    path = osp.join(ROOT, 'configs', 'point_cloud',
                    'hssda_pillar-center_demo3d_semi-10pct_gt-sample-all.py')
    cfg = Config.fromfile(path)
    base = Config.fromfile(path.replace('_gt-sample-all.py', '_gt-sample.py'))
    paste = cfg.model.pop('labeled_paste')
    assert cfg.model == base.model and cfg.train_dataloader == base.train_dataloader
    labeled = cfg.train_dataloader.dataset.datasets[0].pipeline
    assert paste.db_sampler == labeled[1] and labeled[1].type == 'ObjectSample'
    assert paste.point_cloud_range == cfg.point_cloud_range
    assert list(paste.num_paste) == [7, 4, 4]
    assert cfg.load_from == base.load_from


def test_gt_sampling_protocol_is_the_default_one_with_gt_sampling_configs():
    from ssl_det.utils.experiment import load_protocol
    default = load_protocol(osp.join(ROOT, 'benchmarks', 'protocols', 'demo3d.json'))
    gts = load_protocol(osp.join(ROOT, 'benchmarks', 'protocols', 'demo3d_gt-sample.json'))
    assert gts['gt_databases']
    assert set(gts['stage2']) == {'sup', 'oracle', 'hssda', 'hssda_paste'}
    # GT sampling on the whole student input: that protocol's own run, the HSSDA-style one's
    # labeled set and config with labeled_paste
    assert list(gts['stage2'].pop('hssda_paste')) == [
        '10pct', gts['stage2']['hssda'][1].replace('_gt-sample.py', '_gt-sample-all.py')]
    for table in ('pretrain', 'stage2'):
        for key, value in gts[table].items():
            theirs = default[table][key]
            if table == 'stage2':
                assert value[0] == theirs[0]
                value, theirs = value[1], theirs[1]
            assert value == theirs.replace('.py', '_gt-sample.py'), key


def test_the_3d_hssda_config_changes_only_its_teachers_keep_rate():
    """The 3D demo's HSSDA-style config keeps its base's hooks in their order (the
    benchmark's ablations and the tests name ``custom_hooks.2``, the EMA hook) and sets the
    EMA keep-rate alone: the built hook averages with it."""
    base = Config.fromfile(osp.join(
        ROOT, 'configs/point_cloud/mean-teacher_pillar-center_demo3d_semi-10pct.py'))
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/point_cloud/hssda_pillar-center_demo3d_semi-10pct.py'))
    assert [h['type'] for h in cfg.custom_hooks] == [h['type'] for h in base.custom_hooks]
    ema = cfg.custom_hooks[2]
    assert ema['type'] == 'MeanTeacherHook'
    assert dict(ema, momentum_decay=None) == dict(base.custom_hooks[2], momentum_decay=None)
    assert base.custom_hooks[2]['momentum_decay'] == 0.99
    assert HOOKS.build(ema).momentum_decay == 0.97


def test_every_3d_demo_config_has_the_same_detector_with_height_profiles():
    """Both sides of the 3D demo's protocols (stage 1, supervised, oracle, the
    teacher-student configs, GT sampling or not) build one detector, whose pillars carry
    their height profiles into a BEV input as wide as the encoder's output; the KITTI
    configs, which nothing here measured, keep the plain pillar features."""
    detectors = {}
    for path in sorted(glob.glob(osp.join(ROOT, 'configs/point_cloud/*demo3d*.py'))):
        model = Config.fromfile(path).model
        detectors[osp.basename(path)] = model.get('detector', model)
    assert len(detectors) >= 10
    first = next(iter(detectors.values()))
    assert all(d == first for d in detectors.values()), [
        name for name, d in detectors.items() if d != first]
    assert first['voxel_encoder']['height_bins'] == 16
    built = MODELS.build(first)
    assert built.voxel_encoder.out_channels == 32 + 16 == built.middle_encoder.in_channels
    for path in glob.glob(osp.join(ROOT, 'configs/point_cloud/*kitti*.py')):
        model = Config.fromfile(path).model
        assert model.get('detector', model)['voxel_encoder'].get('height_bins', 0) == 0
