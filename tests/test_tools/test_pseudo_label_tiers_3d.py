"""benchmarks/pseudo_label_tiers_3d.py scores a 3D teacher's tiers and ranking against the
labels the unlabeled demo scenes hide."""
import json
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData

from demo_helpers import ROOT
import ssl_det.models  # noqa: F401
from ssl_det.datasets.demo_data_3d import make_demo_data_3d
from ssl_det.models.detectors import teacher_student_3d
from ssl_det.registry import MODELS

sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import pseudo_label_tiers_3d as tiers  # noqa: E402

CFG = osp.join(ROOT, 'configs/point_cloud/hssda_pillar-center_demo3d_semi-10pct.py')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('tiers3d'))
    make_demo_data_3d(root, num_train=20, num_val=2, seed=1, verbose=False)
    from mmengine.registry import init_default_scope
    init_default_scope('ssl_det')
    model = MODELS.build(Config.fromfile(CFG).model)
    ckpt = osp.join(root, 'untrained.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    # the fake teachers' scores as they give them: the config's top support off here (the
    # first test turns it back on)
    return root, ckpt, {'unlabeled_dataset.data_root': root + '/', 'model.top_support': None}


def oracle(shift_every_other=False, only_class=None):
    """A teacher that returns the hidden boxes at 0.9 (the weak sample carries them here),
    and with ``shift_every_other`` a wrong copy of each (of class ``only_class`` if given),
    moved 8 m, scored higher."""
    def predict(self, inputs, samples):
        out = []
        for s in samples:
            gt = s.gt_instances_3d
            boxes = torch.as_tensor(gt.bboxes_3d).float().reshape(-1, 7)
            labels = torch.as_tensor(gt.labels_3d).long()
            scores = torch.full((len(boxes),), 0.9)
            if shift_every_other:
                pick = labels == only_class if only_class is not None else labels >= 0
                wrong = boxes[pick].clone()
                wrong[:, 1] += 8.0
                boxes, labels = torch.cat([boxes, wrong]), torch.cat([labels, labels[pick]])
                scores = torch.cat([scores, torch.full((len(wrong),), 0.95)])
            out.append(InstanceData(bboxes_3d=boxes, scores_3d=scores, labels_3d=labels))
        return out
    return predict


def test_a_perfect_teacher_scores_one_and_wrong_boxes_lower_it(setup, monkeypatch):
    root, ckpt, opts = setup
    monkeypatch.setattr(teacher_student_3d.TeacherStudent3D, 'teacher_predict', oracle())
    right = tiers.score_checkpoint(CFG, ckpt, 50, opts)
    assert right['scenes'] == 18 and right['hidden_boxes'] > 20
    assert right['high']['precision'] == 1.0 and right['recall_high'] == 1.0
    assert right['teacher_ap'] == pytest.approx(1.0)
    monkeypatch.setattr(teacher_student_3d.TeacherStudent3D, 'teacher_predict',
                        oracle(shift_every_other=True))
    half = tiers.score_checkpoint(CFG, ckpt, 50, opts)
    assert half['high']['precision'] == pytest.approx(0.5, abs=0.02)
    assert half['recall_high'] == 1.0
    # every wrong box outranks every right one: the ranking metric sees it
    assert half['teacher_ap'] < 0.7
    # with the config's top support the wrong boxes, on empty ground, lose their scores
    supported = tiers.score_checkpoint(CFG, ckpt, 50, {
        k: v for k, v in opts.items() if k != 'model.top_support'})
    assert supported['high']['precision'] > 0.9 > half['high']['precision']


def test_cfg_options_reach_the_model_teacher_views_included(setup, monkeypatch, tmp_path):
    root, ckpt, opts = setup
    calls = []
    fuse = teacher_student_3d.fuse_views
    monkeypatch.setattr(teacher_student_3d, 'fuse_views',
                        lambda *a, **k: calls.append(1) or fuse(*a, **k))
    out = tmp_path / 'tiers.json'
    tiers.main([ckpt, '--scenes', '3', '--out', str(out), '--cfg-options',
                f'unlabeled_dataset.data_root={root}/', 'model.teacher_views=[flip_y]'])
    import json
    result = json.load(open(out))['runs'][0]
    assert result['cfg_options']['model.teacher_views'] == ['flip_y']
    assert len(calls) == 3  # one fusion per scene
    assert 0.0 <= result['teacher_ap'] <= 1.0


def test_a_stage_one_detector_checkpoint_is_the_teacher_at_the_configs_thresholds(
        setup, tmp_path):
    root, ckpt, opts = setup
    full = torch.load(ckpt, weights_only=True)['state_dict']
    detector = {k[len('teacher.'):]: v for k, v in full.items() if k.startswith('teacher.')}
    plain = str(tmp_path / 'stage1.pth')
    torch.save(dict(state_dict=detector), plain)
    a = tiers.score_checkpoint(CFG, ckpt, 4, opts)
    b = tiers.score_checkpoint(CFG, plain, 4, opts)
    assert (a['thresholds_from'], b['thresholds_from']) == ('checkpoint', 'config')
    for key in ('teacher_ap', 'recall_high', 'hidden_boxes'):
        assert a[key] == b[key], key
    assert [a[t]['boxes'] for t in tiers.TIERS] == [b[t]['boxes'] for t in tiers.TIERS]
    del detector['bbox_head.heatmap.2.weight']
    torch.save(dict(state_dict=detector), plain)
    with pytest.raises(ValueError, match='does not fit'):
        tiers.score_checkpoint(CFG, plain, 4, opts)


def test_per_class_counts_find_the_class_whose_boxes_are_wrong(setup, monkeypatch):
    """Wrong copies of Car boxes only: Car's high precision halves, the other classes stay
    at 1, and the classes' counts add up to the totals."""
    root, ckpt, opts = setup
    monkeypatch.setattr(teacher_student_3d.TeacherStudent3D, 'teacher_predict',
                        oracle(shift_every_other=True, only_class=0))
    result = tiers.score_checkpoint(CFG, ckpt, 50, opts)
    per = result['per_class']
    assert list(per) == ['Car', 'Pedestrian', 'Cyclist']
    assert per['Car']['high']['precision'] == pytest.approx(0.5, abs=0.02)
    for c in ('Pedestrian', 'Cyclist'):
        if per[c]['hidden_boxes']:
            assert per[c]['high']['precision'] == 1.0 and per[c]['recall_high'] == 1.0
    assert per['Car']['recall_high'] == 1.0
    assert sum(per[c]['high']['boxes'] for c in per) == result['high']['boxes']
    assert sum(per[c]['hidden_boxes'] for c in per) == result['hidden_boxes']
    assert per['Car']['high']['boxes'] == 2 * per['Car']['hidden_boxes']
    assert result['high']['precision'] > per['Car']['high']['precision']


def test_precision_by_score_per_class_and_the_labeled_pool(setup, monkeypatch):
    """Wrong Car copies scored 0.95 over right boxes at 0.9: Car's precision of the boxes at
    or above 0.9 is a half and its boxes a scene double; ``pool='labeled'`` scores the
    labeled split's scenes (2 of the 20), not the unlabeled ones."""
    root, ckpt, opts = setup
    monkeypatch.setattr(teacher_student_3d.TeacherStudent3D, 'teacher_predict',
                        oracle(shift_every_other=True, only_class=0))
    seen = []
    pool_scenes = tiers.pool_scenes

    def recorded(cfg, limit, pool):
        dataset, picked = pool_scenes(cfg, limit, pool)
        seen.append({dataset.get_data_info(i)['frame_id'] for i in picked})
        return dataset, picked
    monkeypatch.setattr(tiers, 'pool_scenes', recorded)
    unlabeled = tiers.score_checkpoint(CFG, ckpt, 50, opts)
    # each pool reads its own split's data_root: the unlabeled one's is missing here
    labeled = tiers.score_checkpoint(CFG, ckpt, 50, {
        'unlabeled_dataset.data_root': osp.join(root, 'missing/'),
        'labeled_dataset.data_root': root + '/', 'model.top_support': None}, pool='labeled')
    assert (unlabeled['pool'], unlabeled['scenes']) == ('unlabeled', 18)
    assert (labeled['pool'], labeled['scenes']) == ('labeled', 2)
    assert len(seen[1]) == 2 and not seen[0] & seen[1]
    for result in (unlabeled, labeled):
        per = result['per_class']
        car = per['Car']['by_score']
        assert list(car) == [f'{t:.2f}' for t in tiers.SCORE_STEPS]
        # every box is high here (0.9 and 0.95 over the config's 0.5), so the curve's
        # points equal the high tier's precision, counted apart: about a half (a moved copy
        # may land on another car)
        assert car['0.90']['precision'] == car['0.30']['precision'] == pytest.approx(
            per['Car']['high']['precision']) and 0.45 < car['0.90']['precision'] < 0.6
        assert car['0.90']['per_scene'] == pytest.approx(
            2 * per['Car']['hidden_boxes'] / result['scenes'])
        for c in ('Pedestrian', 'Cyclist'):
            if per[c]['hidden_boxes']:
                assert per[c]['by_score']['0.30']['precision'] == 1.0
    with pytest.raises(ValueError, match='pool'):
        pool_scenes(Config.fromfile(CFG), 5, 'test')


def test_the_val_pool_scores_the_validation_scenes_with_their_labels(setup, monkeypatch):
    """``pool='val'`` reads the scenes of ``val_dataloader``'s file (no run trains on them),
    with their labels: the perfect teacher is right on every box there, and none of the
    scenes is a training scene."""
    root, ckpt, _ = setup
    monkeypatch.setattr(teacher_student_3d.TeacherStudent3D, 'teacher_predict', oracle())
    cfg = Config.fromfile(CFG)
    cfg.merge_from_dict({'val_dataloader.dataset.data_root': root + '/'})
    dataset, picked = tiers.pool_scenes(cfg, 50, 'val')
    val_ids = {dataset.get_data_info(i)['frame_id'] for i in picked}
    with open(osp.join(root, 'train.json')) as f:
        train_ids = {d['frame_id'] for d in json.load(f)['data_list']}
    assert len(val_ids) == 2 and not val_ids & train_ids
    result = tiers.score_checkpoint(CFG, ckpt, 50, {
        'val_dataloader.dataset.data_root': root + '/',
        'unlabeled_dataset.data_root': osp.join(root, 'missing/')}, pool='val')
    assert (result['pool'], result['scenes']) == ('val', 2)
    hidden = sum(v['hidden_boxes'] for v in result['per_class'].values())
    assert hidden > 0
    for per in result['per_class'].values():
        if per['hidden_boxes']:
            assert per['by_score']['0.30']['precision'] == 1.0
