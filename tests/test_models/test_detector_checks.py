"""Build-time checks: the ignored band reaches the assigners (or a warning says it cannot),
and a policy with the wrong number of classes fails at build, not after the burn-in."""
import copy
import os.path as osp

import pytest
import torch
from mmdet.models.task_modules import MaxIoUAssigner
from mmengine.config import Config
from mmengine.structures import InstanceData

from demo_helpers import ROOT
from ssl_det.models.utils import IgnoreAwareMaxIoUAssigner, detector_checks
from ssl_det.registry import MODELS

SEMI_CFG = osp.join(ROOT, 'configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
CASCADE_CFG = osp.join(ROOT,
                       'configs/demo/soft-teacher_cascade-rcnn_r18_fpn_demo_semi-10pct.py')
FCOS_CFG = osp.join(ROOT, 'configs/_base_/models/fcos_r50-caffe_fpn_gn-head.py')
DUAL = dict(type='DualThreshold', high=0.9, low=0.5)


@pytest.fixture
def logs(monkeypatch):
    """Messages the checks print (mmengine's logger does not propagate to caplog)."""
    seen = []
    monkeypatch.setattr(detector_checks, 'print_log',
                        lambda msg, logger=None, level=None: seen.append(msg))
    return seen


def mmdet_like(path=SEMI_CFG, **overrides):
    """The demo's semi-supervised model with mmdet's assigner default (-1: no ignoring)."""
    cfg = copy.deepcopy(Config.fromfile(path).model)
    for assigner_path, assigner in detector_checks.iter_assigners(cfg.detector.train_cfg):
        assigner['ignore_iof_thr'] = -1
    for key, value in overrides.items():
        cfg.pop(key, None)
        cfg[key] = value
    return cfg


def assigner_thresholds(model):
    student = model.student
    thresholds = [student.rpn_head.assigner.ignore_iof_thr]
    roi_head = student.roi_head
    assigners = getattr(roi_head, 'bbox_assigner', None)
    for assigner in assigners if isinstance(assigners, list) else [assigners]:
        thresholds.append(assigner.ignore_iof_thr)
    return thresholds


def test_band_policy_sets_ignore_iof_thr_on_every_assigner(logs):
    model = MODELS.build(mmdet_like(pseudo_label=DUAL))
    assert assigner_thresholds(model) == [0.5, 0.5]
    assert assigner_thresholds(model)[1:] == [model.teacher.roi_head.bbox_assigner.ignore_iof_thr]
    joined = '\n'.join(logs)
    assert 'detector.train_cfg.rpn.assigner.ignore_iof_thr = 0.5 (was -1)' in joined
    assert 'detector.train_cfg.rcnn.assigner.ignore_iof_thr = 0.5 (was -1)' in joined
    assert 'BACKGROUND' not in joined


def test_cascade_stages_all_get_the_threshold(logs):
    model = MODELS.build(mmdet_like(CASCADE_CFG))  # SoftTeacher with DynamicThreshold
    assert assigner_thresholds(model) == [0.5] * 4
    for stage in range(3):
        assert f'detector.train_cfg.rcnn.{stage}.assigner.ignore_iof_thr' in '\n'.join(logs)


def test_without_auto_setting_a_warning_names_the_keys(logs):
    model = MODELS.build(mmdet_like(pseudo_label=DUAL, ignore_iof_thr=None))
    assert assigner_thresholds(model) == [-1, -1]
    warning = [m for m in logs if 'BACKGROUND' in m]
    assert len(warning) == 1
    assert 'detector.train_cfg.rpn.assigner.ignore_iof_thr = -1' in warning[0]
    assert 'detector.train_cfg.rcnn.assigner.ignore_iof_thr = -1' in warning[0]


def test_policy_without_a_band_changes_nothing(logs):
    model = MODELS.build(mmdet_like(pseudo_label=dict(type='FixedThreshold', score_thr=0.7)))
    assert assigner_thresholds(model) == [-1, -1]
    assert logs == []


def test_user_threshold_is_kept(logs):
    cfg = mmdet_like(pseudo_label=DUAL)
    cfg.detector.train_cfg.rcnn.assigner.ignore_iof_thr = 0.3
    model = MODELS.build(cfg)
    assert assigner_thresholds(model) == [0.5, 0.3]


def test_head_without_an_assigner_is_reported(logs):
    fcos = Config.fromfile(FCOS_CFG).model
    fcos.backbone.update(depth=18, init_cfg=None)
    fcos.neck.in_channels = [64, 128, 256, 512]
    fcos.bbox_head.num_classes = 5
    cfg = dict(type='TeacherStudent', detector=fcos, pseudo_label=DUAL)
    MODELS.build(cfg)
    warning = [m for m in logs if 'BACKGROUND' in m]
    assert len(warning) == 1 and 'does not read ignored_instances' in warning[0]


def test_policy_with_other_class_count_fails_at_build():
    with pytest.raises(ValueError, match='thresholds for 3 classes but the detector predicts 5'):
        MODELS.build(mmdet_like(pseudo_label=dict(type='DynamicThreshold', num_classes=3)))
    with pytest.raises(ValueError, match='predicts 5'):
        MODELS.build(mmdet_like(pseudo_label=dict(type='DualThreshold', high=[0.9] * 4,
                                                  low=0.5)))
    # one threshold for every class is fine
    MODELS.build(mmdet_like(pseudo_label=dict(type='DualThreshold', high=0.9, low=0.5)))


def test_band_policy_uses_an_assigner_that_ignores_without_ground_truth(logs):
    model = MODELS.build(mmdet_like(pseudo_label=DUAL))
    for assigner in (model.student.rpn_head.assigner, model.student.roi_head.bbox_assigner):
        assert type(assigner) is IgnoreAwareMaxIoUAssigner
    assert 'detector.train_cfg.rcnn.assigner.type = ssl_det.IgnoreAwareMaxIoUAssigner' in \
        '\n'.join(logs)
    # a FixedThreshold has no band: mmdet's assigner stays
    plain = MODELS.build(mmdet_like(pseudo_label=dict(type='FixedThreshold', score_thr=0.7)))
    assert type(plain.student.roi_head.bbox_assigner) is MaxIoUAssigner


def test_ignored_priors_stay_unassigned_in_an_image_without_ground_truth():
    """An unlabeled image whose teacher boxes all fell in the ambiguous band: priors inside
    an ignored box are neither foreground nor background (mmdet's assigner makes them
    background), the others are background."""
    kwargs = dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5, ignore_iof_thr=0.5)
    priors = InstanceData(priors=torch.tensor([[2., 2., 12., 12.], [4., 4., 10., 10.],
                                               [30., 30., 50., 50.], [8., 0., 30., 10.]]))
    no_gt = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    ignored = InstanceData(bboxes=torch.tensor([[0., 0., 14., 14.]]))
    ours = IgnoreAwareMaxIoUAssigner(**kwargs).assign(priors, no_gt, ignored)
    assert ours.gt_inds.tolist() == [-1, -1, 0, 0]
    assert MaxIoUAssigner(**kwargs).assign(priors, no_gt, ignored).gt_inds.tolist() == [0] * 4
    # with ground truth (or without ignored boxes) it is mmdet's assigner
    gt = InstanceData(bboxes=torch.tensor([[30., 30., 50., 50.]]), labels=torch.tensor([2]))
    for args in ((gt, ignored), (no_gt, None), (gt, None)):
        ours = IgnoreAwareMaxIoUAssigner(**kwargs).assign(priors, *args)
        theirs = MaxIoUAssigner(**kwargs).assign(priors, *args)
        assert ours.gt_inds.tolist() == theirs.gt_inds.tolist()
    assert IgnoreAwareMaxIoUAssigner(**kwargs).assign(priors, gt, ignored).gt_inds.tolist() == \
        [-1, -1, 1, 0]


def test_ignore_iof_threshold_other_than_a_half_decides_the_ignored_priors():
    """``ignore_iof_thr`` itself (0.7 here, apart from the 0.5 IoU thresholds and from
    ``1 - 0.7``) separates the ignored priors (over 70% inside an ignored box) from the
    background ones, in an image without ground truth as in one with it."""
    kwargs = dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5, ignore_iof_thr=0.7)
    # 10 x 10 priors 100%, 80%, 60%, 35% and 0% inside the ignored box
    priors = InstanceData(priors=torch.tensor([[0., 0., 10., 10.], [12., 0., 22., 10.],
                                               [14., 0., 24., 10.], [16.5, 0., 26.5, 10.],
                                               [40., 40., 50., 50.]]))
    no_gt = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    ignored = InstanceData(bboxes=torch.tensor([[0., 0., 20., 20.]]))
    ours = IgnoreAwareMaxIoUAssigner(**kwargs).assign(priors, no_gt, ignored)
    assert ours.gt_inds.tolist() == [-1, -1, 0, 0, 0]
    gt = InstanceData(bboxes=torch.tensor([[40., 40., 50., 50.]]), labels=torch.tensor([1]))
    ours = IgnoreAwareMaxIoUAssigner(**kwargs).assign(priors, gt, ignored)
    assert ours.gt_inds.tolist() == [-1, -1, 0, 0, 1]
