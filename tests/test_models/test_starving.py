"""A teacher with no confident pseudo box: the unlabeled loss teaches nothing (no
"background everywhere"), and the log says the teacher is starving and how to fix it."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.structures import InstanceData

from demo_helpers import ROOT
from ssl_det.models.pseudo_labels import FixedThreshold
from ssl_det.models.utils import starving
from ssl_det.registry import MODELS

MT_CFG = osp.join(ROOT, 'configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
ST_CFG = osp.join(ROOT, 'configs/demo/soft-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
# mmdet's COCO thresholds (cls 0.9, initial 0.5, rpn 0.9), which a teacher trained from
# scratch does not reach
MMDET_THRESHOLDS = dict(pseudo_label=dict(type='FixedThreshold', score_thr=0.9),
                        initial_score_thr=0.5, rpn_pseudo_thr=0.9)
SIZE = 64


@pytest.fixture
def warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(starving, 'print_log',
                        lambda msg, logger=None, level=None: seen.append(msg))
    return seen


def test_watch_warns_after_patience_then_doubling_and_resets(warnings):
    watch = starving.StarvingWatch(3)
    policy = FixedThreshold(0.9)
    streaks = [watch.update(0, torch.tensor([0.2, 0.41]), policy) for _ in range(12)]
    assert streaks == list(range(1, 13))
    assert len(warnings) == 3  # at 3, 6 and 12 iterations
    assert 'no confident pseudo box for 3 iterations' in warnings[0]
    assert 'best teacher score 0.410' in warnings[0]
    for fix in ('score_thr', 'DynamicThreshold', 'burn_in_iters', 'load_from'):
        assert fix in warnings[0]
    assert 'for 12 iterations' in warnings[2]
    assert watch.update(2, torch.tensor([0.95]), policy) == 0
    assert 'again' in warnings[-1]
    assert watch.update(0, torch.tensor([]), policy) == 1


def build(path, **overrides):
    cfg = copy.deepcopy(Config.fromfile(path).model)
    for key, value in overrides.items():
        cfg.pop(key, None)
        cfg[key] = value
    cfg['starving_iters'] = 2
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.teacher.load_state_dict(model.student.state_dict())
    return model


def batch(num=2):
    generator = torch.Generator().manual_seed(0)
    shape = (SIZE, SIZE)

    def sample(with_gt):
        s = DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                                        batch_input_shape=shape, scale_factor=(1., 1.),
                                        homography_matrix=np.eye(3, dtype=np.float32)))
        boxes = torch.tensor([[8., 8., 30., 30.]]) if with_gt else torch.zeros(0, 4)
        s.gt_instances = InstanceData(bboxes=boxes,
                                      labels=torch.zeros(len(boxes), dtype=torch.long))
        return s

    inputs = {k: torch.randn(num, 3, SIZE, SIZE, generator=generator)
              for k in ('sup', 'unsup_teacher', 'unsup_student')}
    samples = {'sup': [sample(True) for _ in range(num)],
               'unsup_teacher': [sample(False) for _ in range(num)],
               'unsup_student': [sample(False) for _ in range(num)]}
    return inputs, samples


def unsup_grads(model, losses):
    model.student.zero_grad()
    total = sum(t.sum() for k, v in losses.items() if k.startswith('unsup_') and 'loss' in k
                for t in (v if isinstance(v, list) else [v]))
    total.backward()
    return [p.grad for p in model.student.parameters()
            if p.grad is not None and p.grad.abs().sum() > 0]


@pytest.mark.parametrize('path,overrides', [
    (MT_CFG, dict(pseudo_label=dict(type='FixedThreshold', score_thr=0.9))),
    (ST_CFG, MMDET_THRESHOLDS),
], ids=['mean_teacher', 'soft_teacher'])
def test_no_pseudo_box_no_unlabeled_gradient_and_a_starving_warning(path, overrides,
                                                                    warnings):
    model = build(path, **overrides)  # a teacher from scratch: no score reaches 0.9
    model.train()
    for step in (1, 2):
        losses = model.loss(*batch())
        assert float(losses['pseudo_num_confident']) == 0
        assert float(losses['pseudo_starving_iters']) == step
        assert any(k.startswith('unsup_') and 'loss' in k for k in losses)
        # nothing the unlabeled images give may reach the student: no "background
        # everywhere", whatever the soft background weights say
        assert unsup_grads(model, losses) == []
    assert len(warnings) == 1 and 'starving teacher' in warnings[0]


def test_soft_teacher_with_pseudo_boxes_still_learns_from_them(warnings, monkeypatch):
    """The switch is per batch: once a confident box exists, the unlabeled classification
    loss is back (the test above would pass if it were always off)."""
    model = build(ST_CFG, pseudo_label=dict(type='FixedThreshold', score_thr=0.0),
                  initial_score_thr=0.0, rpn_pseudo_thr=0.0)
    model.train()
    losses = model.loss(*batch())
    assert float(losses['pseudo_num_confident']) > 0
    assert float(losses['unsup_loss_cls']) > 0 and float(losses['pseudo_starving_iters']) == 0
    assert unsup_grads(model, losses) != []


def test_sparse_teacher_warns_while_pseudo_boxes_are_far_fewer_than_labeled(warnings):
    """mmdet's thresholds on a demo teacher: about 1 confident box per batch of 4 unlabeled
    images against 3 boxes per labeled image. The watch says so after its patience, then
    less often, and not at all once the teacher keeps enough."""
    watch = starving.SparseTeacherWatch(ratio=0.25, patience=5, momentum=0.9)
    policy = FixedThreshold(0.9)
    ratios = []
    for i in range(40):
        watch.update_labeled(12, 4)  # 3 boxes per labeled image
        ratios.append(watch.update(1, 4, policy))  # 0.25 per unlabeled image
    assert ratios[-1] == pytest.approx(0.25 / 3)
    assert len(warnings) == 3  # at 5, then 5 + 10 and 15 + 20 unlabeled iterations
    assert 'sparse teacher: 0.25 confident pseudo boxes per unlabeled image against 3.00' \
        in warnings[0]
    for fix in ('DynamicThreshold', 'soft_background', '[0.9]'):
        assert fix in warnings[0]
    warnings.clear()
    for i in range(100):  # a teacher that keeps as many boxes as the labels hold
        watch.update_labeled(12, 4)
        ratios.append(watch.update(12, 4, policy))
    assert ratios[-1] == pytest.approx(1.0, abs=1e-3)
    assert len(warnings) <= 1  # the decayed sums take a few iterations to recover
    warnings.clear()
    fresh = starving.SparseTeacherWatch(ratio=0.25, patience=5)
    assert fresh.update(0, 4, policy) != fresh.update(0, 4, policy)  # NaN: no labels yet
    assert not warnings
    with pytest.raises(ValueError):
        starving.SparseTeacherWatch(ratio=1.5)


def test_sparse_teacher_compares_boxes_per_image_not_totals(warnings):
    """Labeled and unlabeled batches differ in size (sample_ratio), so the watch must compare
    boxes per image: 4 pseudo boxes on 8 unlabeled images (0.5 each) against 4 boxes on 1
    labeled image is sparse (ratio 0.125), although the totals are equal; and 1 box on 1
    unlabeled image against 8 boxes on 4 labeled images (2 each) is not."""
    policy = FixedThreshold(0.9)
    sparse = starving.SparseTeacherWatch(ratio=0.25, patience=5, momentum=0.9)
    for _ in range(10):
        sparse.update_labeled(4, 1)
        ratio = sparse.update(4, 8, policy)
    assert ratio == pytest.approx(0.125)
    assert len(warnings) == 1
    warnings.clear()
    enough = starving.SparseTeacherWatch(ratio=0.25, patience=5, momentum=0.9)
    for _ in range(10):
        enough.update_labeled(8, 4)
        ratio = enough.update(1, 1, policy)
    assert ratio == pytest.approx(0.5)
    assert not warnings


def test_teacher_student_logs_confident_per_labeled(warnings):
    model = build(MT_CFG, pseudo_label=dict(type='FixedThreshold', score_thr=0.9))
    model.sparse.update_labeled(6, 2)
    split = model.pseudo_label(torch.tensor([0.95, 0.5]), torch.tensor([0, 1]))
    stats = model.split_stats(split, torch.tensor([0.95, 0.5]), torch.tensor([0, 1]), 1, 2)
    assert stats['pseudo/confident_per_labeled'] == pytest.approx(0.5 / 3)
