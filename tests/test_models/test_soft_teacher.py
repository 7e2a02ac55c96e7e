"""SoftTeacher's parts: background weights, loss normalisation, box-jitter uncertainty,
selection, regression on low-uncertainty boxes only, masks, and equivalence with mmdet."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.structures import InstanceData

from assign_helpers import assert_band_ignored, spy_assigner
from demo_helpers import ROOT
from ssl_det.models.pseudo_labels.base import PseudoLabelSplit
from ssl_det.models.soft_teacher import (jitter_box_uncertainty, positive_regression_loss,
                                         sample_proposals, select_pseudo_labels,
                                         soft_background_weights, soft_classification_loss,
                                         student_to_teacher_boxes, teacher_background_scores)
from ssl_det.models.soft_teacher import soft_teacher as soft_teacher_module
from ssl_det.ops import box_jitter
from ssl_det.registry import MODELS

CFG = osp.join(ROOT, 'configs/demo/soft-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
MASK_CFG = osp.join(ROOT, 'configs/demo/soft-teacher_mask-rcnn_r18_fpn_demo_semi-10pct.py')
CASCADE_CFG = osp.join(ROOT,
                       'configs/demo/soft-teacher_cascade-rcnn_r18_fpn_demo_semi-10pct.py')
SIZE = 64
FLIP = np.array([[-1, 0, SIZE], [0, 1, 0], [0, 0, 1]], np.float32)
EYE = np.eye(3, dtype=np.float32)


def build(path=CFG, **overrides):
    cfg = Config.fromfile(path).model
    for key, value in overrides.items():
        cfg.pop(key, None)
        cfg[key] = value
    torch.manual_seed(0)
    if DefaultScope.get_current_instance() is None:
        init_default_scope('ssl_det')
    with DefaultScope.overwrite_default_scope('ssl_det'):  # also for module-scoped fixtures
        model = MODELS.build(cfg)
    model.teacher.load_state_dict(model.student.state_dict())
    return model


@pytest.fixture(scope='module')
def model():
    return build()


def sample(homography=EYE, shape=(SIZE, SIZE)):
    return DetDataSample(metainfo=dict(
        img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=shape,
        scale_factor=(1., 1.), homography_matrix=np.asarray(homography, np.float32)))


def feats_of(net, num_images=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return net.extract_feat(torch.randn(num_images, 3, SIZE, SIZE, generator=generator))


# ---------------------------------------------------------------- background weights
def test_background_weights_are_teacher_background_probabilities(model):
    feats = feats_of(model.teacher)
    student_boxes = [torch.tensor([[4., 4., 20., 20.], [30., 10., 60., 40.]]),
                     torch.tensor([[10., 10., 30., 50.]])]
    # the student's view is the flipped image: the teacher sees the boxes flipped back
    teacher_boxes = [student_to_teacher_boxes(b, FLIP, EYE, (SIZE, SIZE)) for b in student_boxes]
    by_hand = [torch.tensor([[44., 4., 60., 20.], [4., 10., 34., 40.]]),
               torch.tensor([[34., 10., 54., 50.]])]
    for got, want in zip(teacher_boxes, by_hand):
        torch.testing.assert_close(got, want)
    metas = [sample().metainfo] * 2
    bg = teacher_background_scores(model.teacher.roi_head, feats, teacher_boxes, metas)
    with torch.no_grad():
        logits = model.teacher.roi_head._bbox_forward(feats, bbox2roi(by_hand))['cls_score']
    torch.testing.assert_close(bg, F.softmax(logits, dim=-1)[:, -1])

    num_classes = model.student.roi_head.bbox_head.num_classes
    labels = torch.tensor([0, num_classes, num_classes, 2, num_classes])
    weights = soft_background_weights(labels, torch.ones(5), bg, num_classes)
    torch.testing.assert_close(weights, torch.stack([torch.tensor(1.), bg[0], bg[1],
                                                     torch.tensor(1.), bg[2]]))
    with pytest.raises(ValueError, match='3 background samples but 2'):
        soft_background_weights(labels, torch.ones(5), bg[:2], num_classes)


def view(scale_x, scale_y, deg, tx, ty, centre=SIZE / 2):
    """Original image -> view: scale, rotate by ``deg`` about the image centre, shift."""
    a = np.radians(deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    to_centre = np.array([[1, 0, -centre], [0, 1, -centre], [0, 0, 1]])
    back = np.array([[1, 0, centre], [0, 1, centre], [0, 0, 1]])
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    return shift @ back @ rot @ to_centre @ np.diag([scale_x, scale_y, 1])


# Views that are not their own inverse (a flip is, so it cannot tell the two directions
# apart): weak = uneven scale + shift, strong = scale + 30 degree rotation + shift.
WEAK_VIEW = view(1.25, 1.1, 0.0, 3.0, -2.0)
STRONG_VIEW = view(0.75, 0.75, 30.0, 6.0, 4.0)


def enclosing(boxes, point_map):
    """Enclosing box of each box's corners mapped one by one through ``point_map``."""
    out = []
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).tolist():
        points = [point_map(np.array([x, y, 1.0]))
                  for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))]
        xs, ys = [p[0] / p[2] for p in points], [p[1] / p[2] for p in points]
        out.append([min(xs), min(ys), max(xs), max(ys)])
    return np.array(out)


def test_student_boxes_reach_the_teacher_view_for_non_involutive_views():
    """Background boxes go strong view -> original image -> weak view (the teacher scores
    them on its own features), clipped to the weak view; weak -> strong lands elsewhere."""
    student_boxes = torch.tensor([[20., 10., 36., 30.], [30., 30., 50., 44.]])
    teacher_shape = (70, 80)
    got = student_to_teacher_boxes(student_boxes, STRONG_VIEW.astype(np.float32),
                                   WEAK_VIEW.astype(np.float32), teacher_shape)
    # by hand: each corner back to the original image (solve STRONG x = p), on to the weak view
    expected = enclosing(student_boxes, lambda p: WEAK_VIEW @ np.linalg.solve(STRONG_VIEW, p))
    expected[:, 0::2] = expected[:, 0::2].clip(0, teacher_shape[1])
    expected[:, 1::2] = expected[:, 1::2].clip(0, teacher_shape[0])
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32), atol=1e-3,
                               rtol=0)
    # weak -> strong instead misses by far more than a pixel: the check above is not vacuous
    opposite = enclosing(student_boxes, lambda p: STRONG_VIEW @ np.linalg.solve(WEAK_VIEW, p))
    assert np.abs(opposite - expected).max() > 5


@pytest.mark.parametrize('weights', [[1., 0.3, 0.2, 1., 0.5, 0.], [0.1, 0.2, 0., 0., 0., 0.3]])
def test_classification_loss_is_normalised_by_weight_sum(model, weights):
    bbox_head = model.student.roi_head.bbox_head
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(6, bbox_head.num_classes + 1, generator=generator)
    labels = torch.tensor([0, 5, 5, 3, 5, 5])
    weights = torch.tensor(weights)
    losses = soft_classification_loss(bbox_head, scores, labels, weights)
    ce = F.cross_entropy(scores, labels, reduction='none')
    nonzero = max(float((weights > 0).sum()), 1.)
    by_hand = (weights * ce).sum() / nonzero * len(weights) / max(float(weights.sum()), 1.)
    torch.testing.assert_close(losses['loss_cls'], by_hand)
    assert 'acc' in losses


# ---------------------------------------------------------------- uncertainty
class FakeRoIHead:
    """A teacher RoI head whose refinement of each box is ``refine(box rows)``."""

    def __init__(self, refine):
        self.refine = refine

    def predict_bbox(self, feats, metas, proposals, rcnn_test_cfg=None, rescale=False):
        assert rcnn_test_cfg is None and not rescale
        return [InstanceData(bboxes=self.refine(p.bboxes), scores=p.bboxes.new_ones(len(p), 2))
                for p in proposals]


def test_jitter_noise_has_the_scale_of_the_box():
    box = torch.tensor([[10., 20., 210., 70.]])  # 200 wide, 50 high
    torch.manual_seed(0)
    jittered = box_jitter(box, 20000, 0.06)
    std, mean = jittered.std(0), jittered.mean(0)
    torch.testing.assert_close(std, torch.tensor([12., 3., 12., 3.]), rtol=0.03, atol=0)
    torch.testing.assert_close(mean, box[0], rtol=0, atol=0.3)
    # through the teacher: refinements equal to the jittered boxes spread by the jitter
    torch.manual_seed(0)
    unc = jitter_box_uncertainty(FakeRoIHead(lambda b: b), None, [box], [torch.tensor([0])],
                                 [{}], times=4000, scale=0.06)
    assert abs(float(unc[0]) - 0.06) < 0.003


def test_uncertainty_is_zero_for_agreeing_refinements_and_grows_with_spread():
    boxes = [torch.tensor([[10., 10., 40., 30.], [5., 5., 15., 25.]]), torch.zeros(0, 4)]
    labels = [torch.tensor([1, 0]), torch.zeros(0, dtype=torch.long)]
    centre = {}

    def collapse(rows):  # every jittered copy refined to the same box
        return torch.tensor([20., 20., 30., 30.]).expand(len(rows), 4).clone()

    unc = jitter_box_uncertainty(FakeRoIHead(collapse), None, boxes, labels, [{}, {}], 10, 0.06)
    assert torch.equal(unc[0], torch.zeros(2)) and unc[1].shape == (0, )

    def spread(factor):
        def refine(rows):
            base = torch.repeat_interleave(boxes[0], 10, dim=0)[:len(rows)]
            centre['rows'] = base
            return base + factor * (rows - base)
        return refine

    values = []
    for factor in (0.25, 1.0, 4.0):
        torch.manual_seed(3)
        values.append(jitter_box_uncertainty(FakeRoIHead(spread(factor)), None, boxes[:1],
                                             labels[:1], [{}], 10, 0.06)[0])
    assert (values[0] > 0).all()
    assert (values[0] < values[1]).all() and (values[1] < values[2]).all()


# ---------------------------------------------------------------- selection
def test_selection_thresholds():
    scores = torch.tensor([0.95, 0.92, 0.7, 0.55, 0.3])
    uncertainty = torch.tensor([0.01, 0.05, 0.015, 0.5, 0.001])
    split = PseudoLabelSplit(confident=scores >= 0.9,
                             ignored=(scores >= 0.6) & (scores < 0.9))
    sel = select_pseudo_labels(scores, split, uncertainty, initial_thr=0.5, rpn_thr=0.93,
                               reg_thr=0.02)
    assert sel.cls.tolist() == [True, True, False, False, False]
    assert sel.ignored.tolist() == [False, False, True, False, False]
    assert sel.rpn.tolist() == [True, False, False, False, False]
    # low uncertainty trains regression whatever the class score; below 0.5 nothing does
    assert sel.reg.tolist() == [True, False, True, False, False]
    assert sel.used.tolist() == [True, True, True, False, False]
    # a band reaching below initial_thr is ignored there too (not taught as background)
    wide = PseudoLabelSplit(confident=scores >= 0.9, ignored=(scores >= 0.25) & (scores < 0.9))
    sel = select_pseudo_labels(scores, wide, uncertainty, initial_thr=0.5, rpn_thr=0.93,
                               reg_thr=0.02)
    assert sel.ignored.tolist() == [False, False, True, True, True]
    assert sel.cls.tolist() == [True, True, False, False, False]
    assert sel.reg.tolist() == [True, False, True, False, False]  # 0.3 trains nothing
    # a confident detection below initial_thr does not train the classifier: ignored
    sel = select_pseudo_labels(scores, split, uncertainty, initial_thr=0.93, rpn_thr=0.93,
                               reg_thr=0.02)
    assert sel.cls.tolist() == [True, False, False, False, False]
    assert sel.ignored.tolist() == [False, True, True, False, False]


def fake_teacher(monkeypatch, model, detections, uncertainties):
    """Make the teacher predict ``detections`` (per image) with these uncertainties."""
    monkeypatch.setattr(model.teacher.rpn_head, 'predict', lambda *a, **k: None)
    monkeypatch.setattr(model.teacher.roi_head, 'predict',
                        lambda *a, **k: [copy.deepcopy(d) for d in detections])

    def uncertainty(roi_head, feats, boxes, labels, metas, times, scale):
        out = []
        for image_boxes, det, unc in zip(boxes, detections, uncertainties):
            keep = [int((det.bboxes == b).all(1).nonzero()[0]) for b in image_boxes]
            out.append(unc[keep])
        return out

    monkeypatch.setattr(soft_teacher_module, 'jitter_box_uncertainty', uncertainty)


SURE, UNSURE = [6., 6., 26., 30.], [34., 30., 60., 58.]


def sure_and_unsure(monkeypatch, score_thr, scores):
    """A Soft Teacher whose teacher finds two boxes with ``scores`` (labels 1 and 2): SURE
    with jitter uncertainty 0.01 (under ``reg_pseudo_thr`` 0.02) and UNSURE with 0.3; the
    model and the teacher's boxes."""
    model = build(pseudo_label=dict(type='FixedThreshold', score_thr=score_thr),
                  initial_score_thr=0.5, rpn_pseudo_thr=0.5, reg_pseudo_thr=0.02)
    det = InstanceData(bboxes=torch.tensor([SURE, UNSURE]), scores=torch.tensor(scores),
                       labels=torch.tensor([1, 2]))
    fake_teacher(monkeypatch, model, [det], [torch.tensor([0.01, 0.3])])
    return model, det


def test_boxes_over_reg_threshold_get_no_regression_loss(monkeypatch):
    model, det = sure_and_unsure(monkeypatch, 0.5, [0.9, 0.95])
    regression_gts = []
    real = soft_teacher_module.positive_regression_loss

    def recording(roi_head, feats, sampling_results, cfg, stage=None):
        regression_gts.append([r.pos_gt_bboxes for r in sampling_results])
        return real(roi_head, feats, sampling_results, cfg, stage)

    monkeypatch.setattr(soft_teacher_module, 'positive_regression_loss', recording)
    inputs = torch.randn(1, 3, SIZE, SIZE)
    losses = model.unsup_loss(inputs, [sample()], inputs, [sample(FLIP)])
    flipped = lambda b: [SIZE - b[2], b[1], SIZE - b[0], b[3]]  # noqa: E731
    positives = regression_gts[0][0]
    assert len(positives) > 0
    # every positive regression sample regresses to the low-uncertainty box (flipped)
    assert (positives == torch.tensor(flipped(SURE))).all()
    assert losses['unsup_loss_bbox'] > 0 and torch.isfinite(losses['unsup_loss_cls'])
    assert losses['pseudo_num_reg'] == 1 and losses['pseudo_num_confident'] == 2

    # with every box over the threshold there is nothing to regress to
    fake_teacher(monkeypatch, model, [det], [torch.tensor([0.5, 0.3])])
    losses = model.unsup_loss(inputs, [sample()], inputs, [sample(FLIP)])
    assert float(losses['unsup_loss_bbox']) == 0.0


def test_classification_and_regression_learn_from_their_own_pseudo_boxes(monkeypatch):
    """The two pseudo-box sets differ and each reaches only its own loss: a confident box
    the jitter check distrusts (0.95, uncertainty 0.3) is a classification foreground and
    no regression target; a well-localised box under the classification threshold (0.6,
    uncertainty 0.01) is a regression target and no classification foreground."""
    model, _ = sure_and_unsure(monkeypatch, 0.9, [0.6, 0.95])
    cls_labels, reg_targets = [], []
    real_cls = soft_teacher_module.soft_classification_loss
    real_reg = soft_teacher_module.positive_regression_loss

    def recording_cls(bbox_head, cls_score, labels, label_weights):
        cls_labels.append(labels[labels < bbox_head.num_classes])
        return real_cls(bbox_head, cls_score, labels, label_weights)

    def recording_reg(roi_head, feats, sampling_results, cfg, stage=None):
        reg_targets.append(torch.cat([r.pos_gt_bboxes for r in sampling_results]))
        return real_reg(roi_head, feats, sampling_results, cfg, stage)

    monkeypatch.setattr(soft_teacher_module, 'soft_classification_loss', recording_cls)
    monkeypatch.setattr(soft_teacher_module, 'positive_regression_loss', recording_reg)
    inputs = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    losses = model.unsup_loss(inputs, [sample()], inputs, [sample(FLIP)])
    assert losses['pseudo_num_confident'] == 1 and losses['pseudo_num_reg'] == 1
    flipped = lambda b: [SIZE - b[2], b[1], SIZE - b[0], b[3]]  # noqa: E731
    assert len(cls_labels[0]) > 0 and set(cls_labels[0].tolist()) == {2}  # the unsure box
    assert len(reg_targets[0]) > 0
    assert (reg_targets[0] == torch.tensor(flipped(SURE))).all()  # the sure box


@pytest.mark.parametrize('name, homography', [
    ('flip', FLIP),
    ('rotate90', np.array([[0, -1, SIZE], [1, 0, 0], [0, 0, 1]], np.float32)),
])
def test_pseudo_masks_land_where_their_boxes_land(monkeypatch, name, homography):
    model = build(MASK_CFG, pseudo_label=dict(type='FixedThreshold', score_thr=0.5),
                  initial_score_thr=0.5)
    boxes = torch.tensor([[8., 12., 24., 40.], [36., 6., 58., 20.]])
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    masks[0, 12:40, 8:24] = True  # rectangles filling their boxes
    masks[1, 6:20, 36:58] = True
    det = InstanceData(bboxes=boxes, scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([0, 3]),
                       masks=masks)
    fake_teacher(monkeypatch, model, [det], [torch.tensor([0.01, 0.01])])
    strong = sample(homography)
    model.teacher_pseudo_labels(torch.randn(1, 3, SIZE, SIZE), [sample()], [strong])
    gt = strong.gt_instances
    assert len(gt) == 2 and gt.masks.masks.shape == (2, SIZE, SIZE)
    for box, mask in zip(gt.bboxes, gt.masks.masks):
        ys, xs = np.nonzero(mask)
        mask_box = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        torch.testing.assert_close(mask_box, box, atol=1.0, rtol=0)


def test_soft_teacher_rejects_detectors_without_a_standard_roi_head():
    cfg = Config.fromfile(CFG).model
    cfg.detector = Config.fromfile(
        osp.join(ROOT, 'configs/_base_/models/fcos_r50-caffe_fpn_gn-head.py')).model
    cfg.detector.bbox_head.num_classes = 5  # the policy's: the head type is what fails
    with pytest.raises(TypeError, match='StandardRoIHead'):
        MODELS.build(cfg)


# ---------------------------------------------------------------- equivalence with mmdet
@pytest.fixture(scope='module')
def pair():
    """ssl_det's and mmdet's SoftTeacher with the same detector and weights."""
    from mmdet.registry import MODELS as MMDET_MODELS
    ours = build()
    cfg = Config.fromfile(CFG).model
    with DefaultScope.overwrite_default_scope('mmdet'):
        theirs = MMDET_MODELS.build(dict(
            type='SoftTeacher', detector=cfg.detector, data_preprocessor=cfg.data_preprocessor,
            semi_train_cfg=ConfigDict(
                freeze_teacher=True, sup_weight=1.0, unsup_weight=4.0,
                pseudo_label_initial_score_thr=0.5, rpn_pseudo_thr=0.9, cls_pseudo_thr=0.9,
                reg_pseudo_thr=0.02, jitter_times=10, jitter_scale=0.06,
                min_pseudo_bbox_wh=(1e-2, 1e-2)),
            semi_test_cfg=ConfigDict(predict_on='teacher')))
    theirs.student.load_state_dict(ours.student.state_dict())
    theirs.teacher.load_state_dict(ours.student.state_dict())
    ours.train()
    theirs.train()
    theirs.teacher.eval()
    return ours, theirs


def pseudo_boxes(num, seed):
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=generator) * 40
    wh = 6 + torch.rand(num, 2, generator=generator) * 18
    return torch.cat([xy, xy + wh], 1)


def test_uncertainty_equals_mmdet(pair):
    ours, theirs = pair
    feats = feats_of(ours.teacher)
    boxes = [pseudo_boxes(5, 0), pseudo_boxes(3, 1)]
    labels = [torch.tensor([0, 1, 2, 3, 4]), torch.tensor([4, 4, 1])]
    samples = []
    for b, label in zip(boxes, labels):
        s = sample()
        s.gt_instances = InstanceData(bboxes=b, labels=label)
        samples.append(s)
    torch.manual_seed(7)
    theirs_unc = theirs.compute_uncertainty_with_aug(feats, samples)
    torch.manual_seed(7)  # mmdet draws each image's noise in turn
    noise = torch.cat([torch.randn(10, len(b), 4) for b in boxes], dim=1)
    ours_unc = jitter_box_uncertainty(ours.teacher.roi_head, feats, boxes, labels,
                                      [s.metainfo for s in samples], 10, 0.06, noise=noise)
    for a, b in zip(ours_unc, theirs_unc):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def student_batch(seed):
    """Student-view samples (flipped) with pseudo boxes, and proposals."""
    samples, proposals = [], []
    for i in range(2):
        s = sample(FLIP)
        boxes = pseudo_boxes(4, seed + i)
        s.gt_instances = InstanceData(bboxes=boxes, labels=torch.tensor([0, 2, 4, 1]),
                                      scores=torch.ones(4),
                                      reg_uncs=torch.tensor([0.01, 0.5, 0.015, 0.3]))
        samples.append(s)
        jitter = torch.randn(60, 4, generator=torch.Generator().manual_seed(seed + 10 + i)) * 4
        props = torch.cat([boxes.repeat(10, 1) + jitter[:40], pseudo_boxes(20, seed + 20 + i)])
        proposals.append(InstanceData(bboxes=props, scores=torch.rand(60)))
    return samples, proposals


def test_background_weights_and_classification_loss_equal_mmdet(pair, monkeypatch):
    ours, theirs = pair
    samples, proposals = student_batch(3)
    teacher_feats = feats_of(ours.teacher)
    weak_metas = [sample().metainfo for _ in samples]
    inputs = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))

    captured = {}
    head = theirs.student.roi_head.bbox_head
    real_loss = head.loss

    def recording(cls_score, bbox_pred, rois, labels, label_weights, *args, **kwargs):
        captured.update(labels=labels.clone(), weights=label_weights.clone())
        return real_loss(cls_score, bbox_pred, rois, labels, label_weights, *args, **kwargs)

    monkeypatch.setattr(head, 'loss', recording)
    batch_info = dict(feat=teacher_feats, img_shape=[m['img_shape'] for m in weak_metas],
                      homography_matrix=[torch.eye(3) for _ in weak_metas], metainfo=weak_metas)
    torch.manual_seed(11)
    theirs_losses = theirs.rcnn_cls_loss_by_pseudo_instances(
        theirs.student.extract_feat(inputs), copy.deepcopy(proposals), copy.deepcopy(samples),
        batch_info)

    torch.manual_seed(11)
    feats = ours.student.extract_feat(inputs)
    roi_head = ours.student.roi_head
    sampling = sample_proposals(roi_head, feats, [InstanceData(bboxes=p.bboxes) for p in proposals],
                                [s.gt_instances for s in samples])
    scores = roi_head._bbox_forward(feats, bbox2roi([r.priors for r in sampling]))['cls_score']
    labels, weights, _, _ = roi_head.bbox_head.get_targets(sampling, ours.student.train_cfg.rcnn)
    boxes = [student_to_teacher_boxes(r.neg_priors, FLIP, EYE, (SIZE, SIZE)) for r in sampling]
    bg = teacher_background_scores(ours.teacher.roi_head, teacher_feats, boxes, weak_metas)
    weights = soft_background_weights(labels, weights, bg, roi_head.bbox_head.num_classes)
    ours_losses = soft_classification_loss(roi_head.bbox_head, scores, labels, weights)

    assert torch.equal(labels, captured['labels'])
    assert (labels < roi_head.bbox_head.num_classes).any() and (weights < 1).any()
    torch.testing.assert_close(weights, captured['weights'], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours_losses['loss_cls'], theirs_losses['loss_cls'],
                               rtol=1e-5, atol=1e-6)


def test_regression_loss_and_gradients_equal_mmdet(pair):
    ours, theirs = pair
    samples, proposals = student_batch(30)
    inputs = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(6))
    for net in (ours.student, theirs.student):
        net.zero_grad()

    torch.manual_seed(12)
    theirs_loss = theirs.rcnn_reg_loss_by_pseudo_instances(
        theirs.student.extract_feat(inputs), copy.deepcopy(proposals),
        copy.deepcopy(samples))['loss_bbox']
    theirs_loss.backward()

    torch.manual_seed(12)
    feats = ours.student.extract_feat(inputs)
    reg_gts = [s.gt_instances[s.gt_instances.reg_uncs < 0.02] for s in samples]
    sampling = sample_proposals(ours.student.roi_head, feats,
                                [InstanceData(bboxes=p.bboxes) for p in proposals], reg_gts)
    ours_loss = positive_regression_loss(ours.student.roi_head, feats, sampling,
                                         ours.student.train_cfg.rcnn)
    ours_loss.backward()

    assert ours_loss > 0
    torch.testing.assert_close(ours_loss, theirs_loss, rtol=1e-5, atol=1e-7)
    ours_grads = dict(ours.student.named_parameters())
    for name, param in theirs.student.named_parameters():
        if param.grad is None:
            assert ours_grads[name].grad is None or not ours_grads[name].grad.any(), name
            continue
        torch.testing.assert_close(ours_grads[name].grad, param.grad, rtol=1e-4, atol=1e-7,
                                   msg=name)


def test_cascade_last_stage_positive_only_regression_equals_full_pass():
    model = build(CASCADE_CFG)
    roi_head = model.student.roi_head
    samples, proposals = student_batch(40)
    feats = feats_of(model.student)
    props = [InstanceData(bboxes=p.bboxes) for p in proposals]
    torch.manual_seed(3)
    sampling = sample_proposals(roi_head, feats, props, [s.gt_instances for s in samples],
                                None, stage=2)
    ours = positive_regression_loss(roi_head, feats, sampling, roi_head.train_cfg[2], stage=2)
    rois = bbox2roi([r.priors for r in sampling])
    head = roi_head.bbox_head[2]
    targets = head.get_targets(sampling, roi_head.train_cfg[2], concat=True)
    full = head.loss(None, roi_head._bbox_forward(2, feats, rois)['bbox_pred'], rois,
                     *targets)['loss_bbox']
    assert ours > 0
    torch.testing.assert_close(ours, full, rtol=1e-5, atol=1e-7)


def test_dual_threshold_band_is_ignored_not_background(monkeypatch):
    model = build(pseudo_label=dict(type='DualThreshold', high=0.9, low=0.6),
                  initial_score_thr=0.5, rpn_pseudo_thr=0.9)
    det = InstanceData(bboxes=torch.tensor([[6., 6., 26., 30.], [34., 30., 60., 58.],
                                            [10., 40., 20., 50.]]),
                       scores=torch.tensor([0.95, 0.7, 0.55]), labels=torch.tensor([1, 2, 0]))
    fake_teacher(monkeypatch, model, [det], [torch.tensor([0.01, 0.01, 0.01])])
    strong = sample(FLIP)
    _, pseudo, stats = model.teacher_pseudo_labels(torch.randn(1, 3, SIZE, SIZE), [sample()],
                                                   [strong])
    torch.testing.assert_close(strong.gt_instances.bboxes, torch.tensor([[38., 6., 58., 30.]]))
    torch.testing.assert_close(strong.ignored_instances.bboxes,
                               torch.tensor([[4., 30., 30., 58.]]))
    # the 0.55 box is neither: below the band, but it still trains regression
    assert pseudo[0].reg.tolist() == [True, True, True]
    assert stats['pseudo/num_ignored'] == 1 and stats['pseudo/num_rpn'] == 1



def test_band_below_initial_threshold_reaches_the_strong_view_ignored(monkeypatch):
    # the policy ignores from 0.3; Soft Teacher's initial threshold (0.5) must not cut the
    # band and teach its 0.3-0.5 part as background
    model = build(pseudo_label=dict(type='DualThreshold', high=0.9, low=0.3),
                  initial_score_thr=0.5, rpn_pseudo_thr=0.9)
    det = InstanceData(bboxes=torch.tensor([[6., 6., 26., 30.], [34., 30., 60., 58.],
                                            [10., 40., 20., 50.]]),
                       scores=torch.tensor([0.95, 0.4, 0.2]), labels=torch.tensor([1, 2, 0]))
    fake_teacher(monkeypatch, model, [det], [torch.tensor([0.01, 0.01, 0.01])])
    strong = sample(FLIP)
    _, pseudo, stats = model.teacher_pseudo_labels(torch.randn(1, 3, SIZE, SIZE), [sample()],
                                                   [strong])
    torch.testing.assert_close(strong.ignored_instances.bboxes,
                               torch.tensor([[4., 30., 30., 58.]]))
    assert stats['pseudo/num_ignored'] == 1
    assert pseudo[0].reg.tolist() == [True, False]  # below 0.5: ignored, trains nothing

# ---------------------------------------------------------------- ignored band in the RoI head
def test_sample_proposals_leaves_proposals_in_ignored_boxes_unsampled(model):
    """With ``ignore_iof_thr > 0``, a proposal inside an ignored box that overlaps no pseudo
    box is neither a positive nor a negative sample; without the ignored boxes it would be
    background."""
    roi_head = model.student.roi_head
    assert roi_head.bbox_assigner.ignore_iof_thr > 0  # the demo config's RoI assigner
    gts = InstanceData(bboxes=torch.tensor([[4., 4., 24., 24.]]), labels=torch.tensor([1]))
    ignored = InstanceData(bboxes=torch.tensor([[36., 36., 60., 60.]]), labels=torch.tensor([2]))
    proposals = torch.tensor([
        [5., 5., 23., 23.],     # on the pseudo box: positive
        [40., 40., 56., 56.],   # inside the ignored box: ignored
        [34., 38., 58., 62.],   # mostly inside it (iof 0.83): ignored
        [2., 40., 20., 60.],    # background
        [40., 2., 60., 20.],    # background
    ])
    in_band = [1, 2]
    feats = feats_of(model.student, num_images=1)

    def sampled(ignored_instances):
        torch.manual_seed(0)
        res = sample_proposals(roi_head, feats, [InstanceData(bboxes=proposals)], [gts],
                               ignored_instances)[0]
        rows = lambda priors: {tuple(p) for p in priors.tolist()}  # noqa: E731
        return rows(res.pos_priors), rows(res.neg_priors)

    positives, negatives = sampled([ignored])
    band = {tuple(proposals[i].tolist()) for i in in_band}
    assert not band & (positives | negatives)
    assert tuple(proposals[0].tolist()) in positives
    assert {tuple(proposals[i].tolist()) for i in (3, 4)} <= negatives
    # the same proposals with nothing ignored: the band is background
    _, negatives = sampled(None)
    assert band <= negatives


def test_soft_teacher_roi_assigner_ignores_the_band(monkeypatch):
    """Through ``SoftTeacher.loss``: the classification pass assigns with the projected
    ignored boxes, so the student's proposals inside them (away from every pseudo box) are
    left unassigned (-1), neither foreground nor background."""
    model = build(pseudo_label=dict(type='DualThreshold', high=0.9, low=0.5),
                  initial_score_thr=0.5, rpn_pseudo_thr=0.9)
    assigner = model.student.roi_head.bbox_assigner
    assert assigner.ignore_iof_thr > 0
    det = InstanceData(bboxes=torch.tensor([[4., 4., 28., 28.], [32., 0., 64., 64.]]),
                       scores=torch.tensor([0.95, 0.7]), labels=torch.tensor([1, 2]))
    fake_teacher(monkeypatch, model, [det], [torch.tensor([0.01, 0.01])])
    calls = spy_assigner(monkeypatch, assigner)
    torch.manual_seed(0)
    inputs = torch.randn(1, 3, SIZE, SIZE)
    model.loss({'unsup_teacher': inputs, 'unsup_student': inputs},
               {'unsup_teacher': [sample()], 'unsup_student': [sample()]})
    # the classification pass (first) reads the band; the regression pass has no band
    assert len(calls) == 2 and calls[1][1] is None
    priors, ignore, gt_inds = calls[0]
    assert ignore is not None
    torch.testing.assert_close(ignore.bboxes, torch.tensor([[32., 0., 64., 64.]]))
    assert_band_ignored(assigner, priors, gt_inds, ignore.bboxes[0], det.bboxes[0])


# ---------------------------------------------------------------- soft background in the loss
def test_unsup_classification_loss_follows_teacher_background_scores(monkeypatch):
    """``SoftTeacher.loss`` weights the sampled background by the teacher's background
    scores: all-ones scores give the plain loss (as ``soft_background=False``), other scores
    change the unlabeled classification loss."""
    model = build(pseudo_label=dict(type='FixedThreshold', score_thr=0.5),
                  initial_score_thr=0.5, rpn_pseudo_thr=0.5)
    det = InstanceData(bboxes=torch.tensor([[6., 6., 26., 30.], [34., 30., 60., 58.]]),
                       scores=torch.tensor([0.9, 0.95]), labels=torch.tensor([1, 2]))
    fake_teacher(monkeypatch, model, [det], [torch.tensor([0.01, 0.01])])
    inputs = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    calls = []

    def unsup_losses(background_score, soft_background=True):
        def scores(roi_head, feats, boxes, metas):
            calls.append(sum(len(b) for b in boxes))
            return torch.full((sum(len(b) for b in boxes), ), background_score)

        monkeypatch.setattr(soft_teacher_module, 'teacher_background_scores', scores)
        model.soft_background = soft_background
        torch.manual_seed(0)  # the same proposals and samples in every call
        return model.loss({'unsup_teacher': inputs, 'unsup_student': inputs},
                          {'unsup_teacher': [sample()], 'unsup_student': [sample(FLIP)]})

    ones = unsup_losses(1.0)
    plain = unsup_losses(0.2, soft_background=False)
    soft = unsup_losses(0.2)
    assert calls and calls[0] > 0 and len(calls) == 2  # not called without soft_background
    assert float(ones['unsup_loss_cls']) > 0
    torch.testing.assert_close(ones['unsup_loss_cls'], plain['unsup_loss_cls'])
    assert float(soft['pseudo_mean_bg_weight']) == pytest.approx(0.2)
    assert abs(float(soft['unsup_loss_cls']) - float(ones['unsup_loss_cls'])) > 1e-4
    assert abs(float(soft['unsup_loss_cls']) - float(plain['unsup_loss_cls'])) > 1e-4
    # the regression loss does not read the background weights
    torch.testing.assert_close(soft['unsup_loss_bbox'], ones['unsup_loss_bbox'])


def test_count_cap_sees_the_labeled_boxes_and_the_unlabeled_images(monkeypatch):
    """Both ends of DynamicThreshold's count cap reach it through Soft Teacher: the labeled
    batch's boxes per class (TeacherStudent.loss) and how many unlabeled images the
    teacher's detections came from (the unlabeled step)."""
    model = build(pseudo_label=dict(type='DynamicThreshold', num_classes=5, count_cap=1.0,
                                    momentum=0.5, min_count=1))
    policy = model.pseudo_label
    dets = [InstanceData(bboxes=torch.tensor([[6., 6., 26., 30.]]), scores=torch.tensor([0.95]),
                         labels=torch.tensor([2])) for _ in range(3)]
    fake_teacher(monkeypatch, model, dets, [torch.tensor([0.01])] * 3)
    labeled = sample()
    labeled.gt_instances = InstanceData(bboxes=torch.tensor([[4., 4., 30., 30.]] * 3),
                                        labels=torch.tensor([1, 1, 3]))
    inputs = torch.randn(1, 3, SIZE, SIZE)
    weak = torch.randn(3, 3, SIZE, SIZE)
    model.loss({'sup': inputs, 'unsup_teacher': weak, 'unsup_student': weak},
               {'sup': [labeled], 'unsup_teacher': [sample() for _ in range(3)],
                'unsup_student': [sample(FLIP) for _ in range(3)]})
    assert policy.labeled_boxes.tolist() == [0., 2., 0., 1., 0.]
    assert policy.labeled_images.item() == 1 and policy.teacher_images.item() == 3
    # the teacher finds class 2, which no labeled image holds: capped out of confidence
    assert not policy(torch.tensor([0.95]), torch.tensor([2])).confident.item()
    assert policy(torch.tensor([0.95]), torch.tensor([1])).confident.item()


def test_pseudo_boxes_go_weak_to_strong_at_soft_teachers_call_site(monkeypatch):
    # SoftTeacher.teacher_pseudo_labels maps the teacher's weak-view boxes into the strong
    # view (weak -> original -> strong) for classification, RPN, regression and ignored
    # boxes alike; views that are not their own inverse tell the direction
    model = build(pseudo_label=dict(type='DualThreshold', high=0.7, low=0.4),
                  initial_score_thr=0.4, rpn_pseudo_thr=0.7, reg_pseudo_thr=0.02)
    boxes = torch.tensor([[20., 16., 34., 30.], [28., 24., 40., 40.]])
    det = InstanceData(bboxes=boxes, scores=torch.tensor([0.9, 0.5]), labels=torch.tensor([1, 2]))
    fake_teacher(monkeypatch, model, [det], [torch.tensor([0.01, 0.01])])
    strong = sample(STRONG_VIEW, shape=(80, 80))
    _, others, _ = model.teacher_pseudo_labels(torch.randn(1, 3, SIZE, SIZE),
                                               [sample(WEAK_VIEW, shape=(80, 80))], [strong])
    expected = enclosing(boxes, lambda p: STRONG_VIEW @ np.linalg.solve(WEAK_VIEW, p))
    expected = torch.tensor(expected, dtype=torch.float32).clamp(0, 80)
    torch.testing.assert_close(strong.gt_instances.bboxes, expected[:1], atol=1e-3, rtol=0)
    torch.testing.assert_close(strong.ignored_instances.bboxes, expected[1:], atol=1e-3,
                               rtol=0)
    # the RPN box (over 0.7) and the regression boxes (both certain enough) too
    assert others[0].rpn.tolist() == [True, False] and others[0].reg.tolist() == [True, True]
    torch.testing.assert_close(others[0].bboxes, expected, atol=1e-3, rtol=0)
    opposite = enclosing(boxes, lambda p: WEAK_VIEW @ np.linalg.solve(STRONG_VIEW, p))
    assert np.abs(opposite - expected.numpy()).max() > 5  # the check is not vacuous


def test_background_scoring_sees_the_student_boxes_in_the_teacher_view(monkeypatch):
    # at SoftTeacher's own call site: the student's sampled background boxes reach
    # teacher_background_scores mapped strong -> original -> weak (and clipped)
    model = build(pseudo_label=dict(type='FixedThreshold', score_thr=0.5),
                  initial_score_thr=0.5, rpn_pseudo_thr=0.5)
    det = InstanceData(bboxes=torch.tensor([[20., 16., 34., 30.]]), scores=torch.tensor([0.9]),
                       labels=torch.tensor([1]))
    fake_teacher(monkeypatch, model, [det], [torch.tensor([0.01])])
    sampled, scored = [], []
    real_sample = soft_teacher_module.sample_proposals

    def recording_sample(*args, **kwargs):
        out = real_sample(*args, **kwargs)
        sampled.append(out)
        return out

    def scores(roi_head, feats, boxes, metas):
        scored.append([b.clone() for b in boxes])
        return torch.full((sum(len(b) for b in boxes), ), 0.5)

    monkeypatch.setattr(soft_teacher_module, 'sample_proposals', recording_sample)
    monkeypatch.setattr(soft_teacher_module, 'teacher_background_scores', scores)
    torch.manual_seed(0)
    inputs = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    teacher_shape = (70, 80)
    model.unsup_loss(inputs, [sample(WEAK_VIEW, shape=teacher_shape)], inputs,
                     [sample(STRONG_VIEW)])
    negatives = sampled[0][0].neg_priors
    assert len(negatives) > 10 and len(scored) == 1
    expected = enclosing(negatives.detach(),
                         lambda p: WEAK_VIEW @ np.linalg.solve(STRONG_VIEW, p))
    expected[:, 0::2] = expected[:, 0::2].clip(0, teacher_shape[1])
    expected[:, 1::2] = expected[:, 1::2].clip(0, teacher_shape[0])
    torch.testing.assert_close(scored[0][0], torch.tensor(expected, dtype=torch.float32),
                               atol=1e-3, rtol=0)


def test_background_power_sharpens_the_teacher_background_weights(monkeypatch):
    """``background_power`` raises the teacher's background scores to the power before they
    weight the sampled background (and before the renormalisation): 0.5 at power 4 weighs
    0.0625; power 1 leaves the scores as they are."""
    det = InstanceData(bboxes=torch.tensor([[6., 6., 26., 30.], [34., 30., 60., 58.]]),
                       scores=torch.tensor([0.9, 0.95]), labels=torch.tensor([1, 2]))
    inputs = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    real = soft_teacher_module.soft_background_weights

    def weights_seen(power):
        model = build(pseudo_label=dict(type='FixedThreshold', score_thr=0.5),
                      initial_score_thr=0.5, rpn_pseudo_thr=0.5, background_power=power)
        fake_teacher(monkeypatch, model, [det], [torch.tensor([0.01, 0.01])])
        monkeypatch.setattr(
            soft_teacher_module, 'teacher_background_scores',
            lambda roi_head, feats, boxes, metas: torch.linspace(
                0.5, 1.0, sum(len(b) for b in boxes)))
        seen = []

        def recording(labels, label_weights, bg_scores, num_classes):
            seen.append(bg_scores.clone())
            return real(labels, label_weights, bg_scores, num_classes)

        monkeypatch.setattr(soft_teacher_module, 'soft_background_weights', recording)
        torch.manual_seed(0)
        losses = model.loss({'unsup_teacher': inputs, 'unsup_student': inputs},
                            {'unsup_teacher': [sample()], 'unsup_student': [sample(FLIP)]})
        assert len(seen) == 1 and seen[0].numel() > 1
        return seen[0], losses

    plain, plain_losses = weights_seen(1.0)
    sharp, sharp_losses = weights_seen(4.0)
    expected = torch.linspace(0.5, 1.0, plain.numel())
    torch.testing.assert_close(plain, expected)
    torch.testing.assert_close(sharp, expected ** 4)
    assert float(sharp_losses['pseudo_mean_bg_weight']) == pytest.approx(
        float((expected ** 4).mean()), rel=1e-5)
    assert abs(float(sharp_losses['unsup_loss_cls']) - float(plain_losses['unsup_loss_cls'])) \
        > 1e-4
    with pytest.raises(ValueError, match='background_power'):
        build(background_power=0.0)


@pytest.mark.parametrize('on', [False, True])
def test_rpn_ignores_classification_boxes_under_its_threshold(monkeypatch, on):
    """With ``rpn_ignore_unconfident``, a classification pseudo box under
    ``rpn_pseudo_thr`` reaches the RPN's loss among its ignored boxes, mapped weak -> strong
    (views that are not their own inverse), not as background; without it only the
    ignored band does (mmdet's)."""
    model = build(pseudo_label=dict(type='DualThreshold', high=0.8, low=0.5),
                  initial_score_thr=0.5, rpn_pseudo_thr=0.9, rpn_ignore_unconfident=on)
    assert model.student.rpn_head.assigner.ignore_iof_thr > 0
    boxes = torch.tensor([[20., 16., 34., 30.], [28., 24., 40., 40.], [10., 40., 20., 50.]])
    det = InstanceData(bboxes=boxes, scores=torch.tensor([0.95, 0.85, 0.6]),
                       labels=torch.tensor([1, 2, 0]))
    fake_teacher(monkeypatch, model, [det], [torch.tensor([0.01, 0.01, 0.01])])
    seen = []
    real = model.student.rpn_head.loss_and_predict

    def recording(feats, samples, proposal_cfg=None):
        seen.extend(samples)
        return real(feats, samples, proposal_cfg=proposal_cfg)

    monkeypatch.setattr(model.student.rpn_head, 'loss_and_predict', recording)
    inputs = torch.randn(1, 3, 80, 80)
    strong = sample(STRONG_VIEW, shape=(80, 80))
    losses = model.loss({'unsup_teacher': inputs, 'unsup_student': inputs},
                        {'unsup_teacher': [sample(WEAK_VIEW, shape=(80, 80))],
                         'unsup_student': [strong]})
    rpn_cls = losses['unsup_loss_rpn_cls']
    rpn_cls = rpn_cls if isinstance(rpn_cls, list) else [rpn_cls]  # per FPN level
    assert all(bool(torch.isfinite(v).all()) for v in rpn_cls)
    (rpn_sample, ) = seen
    expected = torch.tensor(
        enclosing(boxes, lambda p: STRONG_VIEW @ np.linalg.solve(WEAK_VIEW, p)),
        dtype=torch.float32).clamp(0, 80)
    # the RPN learns the 0.95 box only
    torch.testing.assert_close(rpn_sample.gt_instances.bboxes, expected[:1], atol=1e-3, rtol=0)
    band, unconfident = expected[2:], expected[1:2]  # the 0.6 box, the 0.85 box
    ignored = rpn_sample.ignored_instances.bboxes
    want = torch.cat([band, unconfident]) if on else band
    order = lambda b: b[b[:, 0].argsort()]  # noqa: E731
    torch.testing.assert_close(order(ignored), order(want), atol=1e-3, rtol=0)
    # the RoI classifier still learns the 0.85 box as an object either way
    assert len(strong.gt_instances) == 2


def test_soft_negative_loss_is_cross_entropy_with_the_teachers_distribution(model):
    """Foreground samples keep their labels; each background sample learns the teacher's
    distribution: one-hot background targets give the plain loss, and mass on a class
    pulls the student's logit of that class up."""
    from ssl_det.models.soft_teacher import soft_negative_classification_loss
    head = model.student.roi_head.bbox_head
    num_classes = head.num_classes
    logits = torch.randn(5, num_classes + 1, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([1, num_classes, 0, num_classes, num_classes])
    weights = torch.ones(5)
    background = F.one_hot(torch.full((3, ), num_classes), num_classes + 1).float()
    hard = soft_negative_classification_loss(head, logits, labels, weights, background)
    plain = soft_classification_loss(head, logits, labels, weights)
    torch.testing.assert_close(hard['loss_cls'], plain['loss_cls'])

    teacher = background.clone()
    teacher[0] = 0.0
    teacher[0, [2, num_classes]] = torch.tensor([0.7, 0.3])
    scores = logits.clone().requires_grad_()
    soft = soft_negative_classification_loss(head, scores, labels, weights, teacher)
    log_p = logits.log_softmax(-1)
    expected = -(log_p[0, 1] + 0.7 * log_p[1, 2] + 0.3 * log_p[1, num_classes]
                 + log_p[2, 0] + log_p[3, num_classes] + log_p[4, num_classes]) / 5
    torch.testing.assert_close(soft['loss_cls'], expected)
    soft['loss_cls'].backward()
    assert float(scores.grad[1, 2]) < 0  # the hard background target pushes it down
    assert float(scores.grad[3, 2]) > 0
    with pytest.raises(ValueError, match='background samples'):
        soft_negative_classification_loss(head, logits, labels, weights, teacher[:2])


def test_soft_negatives_at_soft_teachers_call_site(monkeypatch):
    """With ``soft_negatives`` Soft Teacher asks the teacher for its distribution on the
    student's background samples, in the weak view (the boxes the background weights are
    computed on, whose mapping test_background_scoring_sees_the_student_boxes_in_the_teacher_view
    checks), and teaches them that: an
    all-background distribution gives the unweighted loss, mass on a class changes it; the
    background weights are not used."""
    det = InstanceData(bboxes=torch.tensor([[20., 16., 34., 30.], [34., 30., 60., 58.]]),
                       scores=torch.tensor([0.9, 0.95]), labels=torch.tensor([1, 2]))
    inputs = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    weighted, seen = [], []

    def unsup_losses(class_mass=None, **options):
        model = build(pseudo_label=dict(type='FixedThreshold', score_thr=0.5),
                      initial_score_thr=0.5, rpn_pseudo_thr=0.5, **options)
        fake_teacher(monkeypatch, model, [det], [torch.tensor([0.01, 0.01])])
        num_classes = model.student.roi_head.bbox_head.num_classes

        def distributions(roi_head, feats, boxes, metas, classes):
            assert classes == num_classes
            seen.append([b.clone() for b in boxes])
            out = torch.zeros(sum(len(b) for b in boxes), num_classes + 1)
            out[:, -1] = 1.0 - (class_mass or 0.0)
            out[:, 3] = class_mass or 0.0
            return out

        def background(roi_head, feats, boxes, metas):
            weighted.append([b.clone() for b in boxes])
            return torch.ones(sum(len(b) for b in boxes))

        monkeypatch.setattr(soft_teacher_module, 'teacher_class_scores', distributions)
        monkeypatch.setattr(soft_teacher_module, 'teacher_background_scores', background)
        torch.manual_seed(0)
        return model.unsup_loss(inputs, [sample(WEAK_VIEW, shape=(70, 80))], inputs,
                                [sample(STRONG_VIEW)])

    ones = unsup_losses()  # Soft Teacher's weights, all 1: the plain loss
    assert len(weighted) == 1 and not seen
    hard = unsup_losses(soft_negatives=True)
    assert len(weighted) == 1 and len(seen) == 1  # the weights are not computed
    torch.testing.assert_close(hard['unsup_loss_cls'], ones['unsup_loss_cls'])
    assert len(seen[0][0]) > 10
    torch.testing.assert_close(seen[0][0], weighted[0][0])
    soft = unsup_losses(0.6, soft_negatives=True)
    assert abs(float(soft['unsup_loss_cls']) - float(hard['unsup_loss_cls'])) > 1e-3
    with pytest.raises(ValueError, match='background_power'):
        build(soft_negatives=True, background_power=2.0)
