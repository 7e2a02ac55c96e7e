"""TeacherStudent: pseudo instances mapped weak → strong, ignored band, loading, predict_on."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.structures import InstanceData

from assign_helpers import assert_band_ignored, spy_assigner
from demo_helpers import ROOT
from ssl_det.registry import MODELS

SEMI_CFG = osp.join(ROOT, 'configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')


@pytest.fixture(scope='module')
def model_cfg():
    cfg = Config.fromfile(SEMI_CFG)
    return cfg.model


def _build(model_cfg, **overrides):
    cfg = copy.deepcopy(model_cfg)
    for key, value in overrides.items():
        cfg.pop(key, None)  # replace whole entries (ConfigDict.update would merge them)
        cfg[key] = value
    return MODELS.build(cfg)


def _sample(homography, shape=(64, 64)):
    sample = DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, scale_factor=(1, 1),
                                         pad_shape=shape, batch_input_shape=shape,
                                         homography_matrix=np.asarray(homography, np.float32)))
    sample.gt_instances = InstanceData(bboxes=torch.zeros(0, 4),
                                       labels=torch.zeros(0, dtype=torch.long))
    return sample


def test_pseudo_instances_are_projected_and_split(model_cfg, monkeypatch):
    model = _build(model_cfg, pseudo_label=dict(type='DualThreshold', high=0.8, low=0.4))
    pred = InstanceData(bboxes=torch.tensor([[4., 8., 20., 30.], [30., 30., 40., 44.],
                                             [1., 1., 5., 5.], [10., 10., 30., 30.]]),
                        scores=torch.tensor([0.95, 0.6, 0.3, 0.8]),
                        labels=torch.tensor([1, 2, 3, 0]))
    monkeypatch.setattr(model, 'teacher_predict', lambda inputs, samples: [pred.clone()])
    weak = _sample(np.eye(3))
    flip = np.array([[-1, 0, 64], [0, 1, 0], [0, 0, 1]], np.float32)  # horizontal flip
    strong = _sample(flip)
    out, stats = model.pseudo_instances(None, [weak], [strong])
    gt = out[0].gt_instances
    # score >= 0.8 -> pseudo ground truth (0.95, and 0.8 exactly), flipped into the strong view
    torch.testing.assert_close(gt.bboxes, torch.tensor([[44., 8., 60., 30.],
                                                        [34., 10., 54., 30.]]))
    assert gt.labels.tolist() == [1, 0]
    ignored = out[0].ignored_instances
    torch.testing.assert_close(ignored.bboxes, torch.tensor([[24., 30., 34., 44.]]))
    assert ignored.labels.tolist() == [2]
    assert stats['pseudo/num_confident'] == 2 and stats['pseudo/num_ignored'] == 1
    assert stats['pseudo/num_dropped'] == 1


def _view(scale_x, scale_y, deg, tx, ty, centre=32.0):
    """Original image -> view (mmdet's ``homography_matrix``): scale, rotate by ``deg`` about
    the image centre, shift."""
    a = np.radians(deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    to_centre = np.array([[1, 0, -centre], [0, 1, -centre], [0, 0, 1]])
    back = np.array([[1, 0, centre], [0, 1, centre], [0, 0, 1]])
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    return shift @ back @ rot @ to_centre @ np.diag([scale_x, scale_y, 1])


def _enclosing(boxes, matrix):
    """Enclosing box of each box's corners mapped one by one through ``matrix``."""
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        points = [matrix @ np.array([x, y, 1.0]) for x, y in
                  ((x1, y1), (x2, y1), (x2, y2), (x1, y2))]
        xs, ys = [p[0] / p[2] for p in points], [p[1] / p[2] for p in points]
        out.append([min(xs), min(ys), max(xs), max(ys)])
    return np.array(out)


def test_pseudo_instances_map_weak_to_strong_for_non_involutive_views(model_cfg, monkeypatch):
    """The teacher sees each object through the weak view; its pseudo (and ignored) box must
    reach the student where the ORIGINAL box lands in the strong view. Identity and flips
    are their own inverse and cannot tell weak -> strong from strong -> weak; a scaled,
    shifted weak view and a rotated (30 degrees), scaled, shifted strong view can."""
    model = _build(model_cfg, pseudo_label=dict(type='DualThreshold', high=0.9, low=0.5))
    original = np.array([[10., 12., 26., 30.], [34., 20., 50., 40.]])
    weak_h = _view(1.25, 1.1, 0.0, 3.0, -2.0)
    strong_h = _view(0.75, 0.75, 30.0, 6.0, 4.0)
    # the weak view only scales and shifts: the teacher's boxes are the originals' images
    pred = InstanceData(bboxes=torch.tensor(_enclosing(original, weak_h), dtype=torch.float32),
                        scores=torch.tensor([0.95, 0.7]), labels=torch.tensor([1, 2]))
    monkeypatch.setattr(model, 'teacher_predict', lambda inputs, samples: [pred.clone()])
    out, stats = model.pseudo_instances(None, [_sample(weak_h, (70, 80))], [_sample(strong_h)])
    expected = _enclosing(original, strong_h)
    assert expected.min() > 0 and expected.max() < 64  # inside the strong view: no clipping
    gt, ignored = out[0].gt_instances, out[0].ignored_instances
    torch.testing.assert_close(gt.bboxes, torch.tensor(expected[:1], dtype=torch.float32),
                               atol=1e-3, rtol=0)
    torch.testing.assert_close(ignored.bboxes, torch.tensor(expected[1:], dtype=torch.float32),
                               atol=1e-3, rtol=0)
    assert gt.labels.tolist() == [1] and ignored.labels.tolist() == [2]
    assert stats['pseudo/num_dropped_degenerate'] == 0
    # strong -> weak would put them far from there: the check above is not vacuous
    backwards = _enclosing(pred.bboxes.numpy(), weak_h @ np.linalg.inv(strong_h))
    assert np.abs(backwards - expected).max() > 5


def test_degenerate_projected_boxes_are_dropped_and_counted(model_cfg, monkeypatch):
    model = _build(model_cfg, pseudo_label=dict(type='FixedThreshold', score_thr=0.5))
    pred = InstanceData(bboxes=torch.tensor([[2., 2., 20., 20.], [50., 50., 60., 60.]]),
                        scores=torch.tensor([0.9, 0.9]), labels=torch.tensor([0, 1]))
    monkeypatch.setattr(model, 'teacher_predict', lambda inputs, samples: [pred.clone()])
    shift = np.array([[1, 0, 20], [0, 1, 20], [0, 0, 1]], np.float32)  # second box leaves
    out, stats = model.pseudo_instances(None, [_sample(np.eye(3))], [_sample(shift)])
    assert len(out[0].gt_instances) == 1
    assert stats['pseudo/num_dropped_degenerate'] == 1


def test_ignored_instances_reach_the_student(model_cfg, monkeypatch):
    model = _build(model_cfg, pseudo_label=dict(type='DualThreshold', high=0.9, low=0.5))
    pred = InstanceData(bboxes=torch.tensor([[4., 4., 30., 30.], [34., 34., 60., 60.]]),
                        scores=torch.tensor([0.95, 0.7]), labels=torch.tensor([1, 2]))
    monkeypatch.setattr(model, 'teacher_predict', lambda inputs, samples: [pred.clone()])
    seen = {}
    real_loss = model.student.loss

    def spy(inputs, samples):
        seen['samples'] = samples
        return real_loss(inputs, samples)

    monkeypatch.setattr(model.student, 'loss', spy)
    inputs = torch.randn(1, 3, 64, 64)
    losses = model.loss({'unsup_teacher': inputs, 'unsup_student': inputs},
                        {'unsup_teacher': [_sample(np.eye(3))],
                         'unsup_student': [_sample(np.eye(3))]})
    sample = seen['samples'][0]
    assert sample.gt_instances.labels.tolist() == [1]
    assert sample.ignored_instances.labels.tolist() == [2]
    values = [t for k, v in losses.items() if 'loss' in k
              for t in (v if isinstance(v, list) else [v])]
    assert values and all(torch.isfinite(t).all() for t in values)
    assert losses['pseudo_num_confident'] == 1 and losses['pseudo_num_ignored'] == 1


def test_burn_in_trains_supervised_only(model_cfg):
    model = _build(model_cfg)
    model.unsup_active = False
    inputs = torch.randn(1, 3, 64, 64)
    sample = _sample(np.eye(3))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[4., 4., 30., 30.]]),
                                       labels=torch.tensor([1]))
    losses = model.loss({'sup': inputs, 'unsup_teacher': inputs, 'unsup_student': inputs},
                        {'sup': [sample], 'unsup_teacher': [_sample(np.eye(3))],
                         'unsup_student': [_sample(np.eye(3))]})
    assert losses and all(k.startswith('sup_') for k in losses)


def test_plain_checkpoint_fills_teacher_and_student(model_cfg):
    model = _build(model_cfg)
    detector = MODELS.build(copy.deepcopy(model_cfg.detector))
    state = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v
             for k, v in detector.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected
    for name in ('teacher', 'student'):
        sub = getattr(model, name).state_dict()
        assert all(torch.equal(sub[k], state[k]) for k in state)


def test_predict_on_switches_network(model_cfg, monkeypatch):
    model = _build(model_cfg, predict_on='student')
    calls = []
    monkeypatch.setattr(model.student, 'predict', lambda *a, **k: calls.append('student'))
    monkeypatch.setattr(model.teacher, 'predict', lambda *a, **k: calls.append('teacher'))
    model.predict(None, [])
    model.predict_on = 'teacher'
    model.predict(None, [])
    assert calls == ['student', 'teacher']
    with pytest.raises(ValueError, match='predict_on'):
        _build(model_cfg, predict_on='both')


def test_teacher_is_frozen_and_stays_in_eval(model_cfg):
    model = _build(model_cfg)
    model.train()
    assert not model.teacher.training and model.student.training
    assert not any(p.requires_grad for p in model.teacher.parameters())


def test_pseudo_masks_follow_their_boxes_into_the_strong_view(model_cfg, monkeypatch):
    """With a mask head, confident teacher masks become the student's mask targets, warped
    with the same weak -> strong homography as their boxes (here a horizontal flip)."""
    model = _build(model_cfg, pseudo_label=dict(type='FixedThreshold', score_thr=0.5))
    model.with_pseudo_masks = True  # as for a detector with a mask head
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 8:30, 4:20] = True
    pred = InstanceData(bboxes=torch.tensor([[4., 8., 20., 30.]]), scores=torch.tensor([0.9]),
                        labels=torch.tensor([2]), masks=masks)
    monkeypatch.setattr(model, 'teacher_predict', lambda inputs, samples: [pred.clone()])
    flip = np.array([[-1, 0, 64], [0, 1, 0], [0, 0, 1]], np.float32)
    out, _ = model.pseudo_instances(None, [_sample(np.eye(3))], [_sample(flip)])
    gt = out[0].gt_instances
    torch.testing.assert_close(gt.bboxes, torch.tensor([[44., 8., 60., 30.]]))
    mask = gt.masks.masks[0]
    ys, xs = np.nonzero(mask)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (44, 8, 60, 30)
    assert out[0].ignored_instances.get('masks') is None


def test_student_roi_assigner_ignores_the_band(model_cfg, monkeypatch):
    """Through ``TeacherStudent.loss``, the student's RoI assigner gets the ignored band:
    proposals lying inside an ignored box (iof over ``ignore_iof_thr``) and away from every
    pseudo box are left unassigned (-1), neither foreground nor background; the others are
    assigned as usual."""
    model = _build(model_cfg, pseudo_label=dict(type='DualThreshold', high=0.9, low=0.5))
    assigner = model.student.roi_head.bbox_assigner
    assert assigner.ignore_iof_thr > 0  # the mean-teacher demo config sets it
    pseudo_box, ignored_box = torch.tensor([4., 4., 28., 28.]), torch.tensor([32., 0., 64., 64.])
    pred = InstanceData(bboxes=torch.stack([pseudo_box, ignored_box]),
                        scores=torch.tensor([0.95, 0.7]), labels=torch.tensor([1, 2]))
    monkeypatch.setattr(model, 'teacher_predict', lambda inputs, samples: [pred.clone()])
    calls = spy_assigner(monkeypatch, assigner)
    torch.manual_seed(0)
    inputs = torch.randn(1, 3, 64, 64)
    model.loss({'unsup_teacher': inputs, 'unsup_student': inputs},
               {'unsup_teacher': [_sample(np.eye(3))], 'unsup_student': [_sample(np.eye(3))]})
    assert len(calls) == 1
    priors, ignore, gt_inds = calls[0]
    assert ignore is not None
    torch.testing.assert_close(ignore.bboxes, ignored_box[None])
    assert_band_ignored(assigner, priors, gt_inds, ignored_box, pseudo_box)


def test_count_cap_counts_the_unlabeled_images(model_cfg, monkeypatch):
    """The mean teacher's unlabeled step tells DynamicThreshold's count cap how many images
    its detections came from (boxes per image are what the cap compares)."""
    num_classes = model_cfg.detector.roi_head.bbox_head.num_classes
    model = _build(model_cfg, pseudo_label=dict(type='DynamicThreshold', count_cap=1.0,
                                                num_classes=num_classes, min_count=1))
    pred = InstanceData(bboxes=torch.tensor([[4., 8., 20., 30.]]), scores=torch.tensor([0.95]),
                        labels=torch.tensor([1]))
    monkeypatch.setattr(model, 'teacher_predict',
                        lambda inputs, samples: [pred.clone() for _ in samples])
    model.pseudo_label.update_labeled(torch.tensor([1]), num_images=1)
    model.pseudo_instances(None, [_sample(np.eye(3)) for _ in range(3)],
                           [_sample(np.eye(3)) for _ in range(3)])
    assert model.pseudo_label.teacher_images.item() == 3
    assert model.pseudo_label.score_hist.sum().item() == 3


def test_the_policy_learns_from_every_unlabeled_batch(model_cfg, monkeypatch):
    # DynamicThreshold is updated at every iteration with that iteration's teacher scores
    # (and the labeled batch's classes), not once, not every few iterations
    num_classes = model_cfg.detector.roi_head.bbox_head.num_classes
    model = _build(model_cfg, pseudo_label=dict(type='DynamicThreshold',
                                                num_classes=num_classes, min_count=1))
    batches = [torch.tensor([0.95, 0.3]), torch.tensor([0.6]), torch.tensor([0.8, 0.7, 0.2])]
    calls = []
    real_update = model.pseudo_label.update

    def update(scores, labels, num_images=None):
        calls.append((scores.clone(), num_images))
        return real_update(scores, labels, num_images=num_images)

    monkeypatch.setattr(model.pseudo_label, 'update', update)
    for step, scores in enumerate(batches):
        pred = InstanceData(bboxes=torch.tensor([[4., 8., 20., 30.]]).repeat(len(scores), 1),
                            scores=scores, labels=torch.ones(len(scores), dtype=torch.long))
        monkeypatch.setattr(model, 'teacher_predict', lambda inputs, samples, p=pred: [p])
        model.pseudo_instances(None, [_sample(np.eye(3))], [_sample(np.eye(3))])
        assert len(calls) == step + 1
        torch.testing.assert_close(calls[-1][0], scores)
        assert calls[-1][1] == 1


@pytest.mark.parametrize('replace_strong', [True, False])
def test_mixing_trains_on_mixed_views_of_this_batchs_pseudo_boxes(model_cfg, monkeypatch,
                                                                   replace_strong):
    # MixPL's switch: after the cache fills, the student learns on a Mixup and a Mosaic
    # batch, whose pseudo boxes are this iteration's, mapped weak -> strong (a translation,
    # so the direction shows), then carried into the mixed image. MixPL's rule
    # (replace_strong): the Mixup batch takes the plain strong views' place in the loss;
    # otherwise the mixed batches come on top of it.
    model = _build(model_cfg, pseudo_label=dict(type='DualThreshold', high=0.8, low=0.4),
                   mixing=dict(cache_size=4, replace_strong=replace_strong))
    pred = InstanceData(bboxes=torch.tensor([[10., 12., 30., 28.], [40., 40., 50., 52.]]),
                        scores=torch.tensor([0.95, 0.5]), labels=torch.tensor([1, 2]))
    monkeypatch.setattr(model, 'teacher_predict',
                        lambda inputs, samples: [pred.clone() for _ in samples])
    shift = np.array([[1, 0, 6], [0, 1, -4], [0, 0, 1]], np.float32)
    calls = []
    real_loss = model.student.loss

    def spy(inputs, samples):
        calls.append((inputs.shape, [copy.deepcopy(s) for s in samples]))
        out = real_loss(inputs, samples)
        raw.append({k: v.detach().clone() for k, v in out.items() if k == 'loss_cls'})
        return out

    raw = []
    monkeypatch.setattr(model.student, 'loss', spy)
    generator = torch.Generator().manual_seed(0)

    def batch():
        sup = [_sample(np.eye(3)) for _ in range(2)]
        for s in sup:
            s.gt_instances = InstanceData(bboxes=torch.tensor([[8., 8., 40., 40.]]),
                                          labels=torch.tensor([0]))
        return ({'sup': torch.randn(2, 3, 64, 64, generator=generator),
                 'unsup_teacher': torch.randn(2, 3, 64, 64, generator=generator),
                 'unsup_student': torch.randn(2, 3, 64, 64, generator=generator)},
                {'sup': sup, 'unsup_teacher': [_sample(np.eye(3)) for _ in range(2)],
                 'unsup_student': [_sample(shift) for _ in range(2)]})

    for _ in range(2):  # 2 strong views a batch: the cache is full after two
        losses = model.loss(*batch())
        assert not any('mixup' in k or 'mosaic' in k for k in losses)
        assert 'unsup_loss_cls' in losses  # until then the strong views train
    calls.clear()
    raw.clear()
    losses = model.loss(*batch())
    # the strong views' own loss: gone with replace_strong, kept without
    assert ('unsup_loss_cls' in losses) == (not replace_strong)
    assert losses['pseudo_num_confident'] == 2  # their pseudo labels were made either way
    first = 1 if replace_strong else 2  # student.loss calls: sup, [strong], mixup, mosaic
    # weighted as the unlabeled loss times the mixer's weight (mixup 1, mosaic 0.5)
    scale = model.unsup_weight * float(model.unsup_guard.scale)
    torch.testing.assert_close(losses['unsup_mixup_loss_cls'], raw[first]['loss_cls'] * scale)
    torch.testing.assert_close(losses['unsup_mosaic_loss_cls'],
                               raw[first + 1]['loss_cls'] * scale * 0.5)
    assert raw[first]['loss_cls'] > 0 and raw[first + 1]['loss_cls'] > 0
    for name in ('mixup', 'mosaic'):
        keys = [k for k in losses if k.startswith(f'unsup_{name}_') and 'loss' in k]
        assert {'unsup_%s_loss_cls' % name, 'unsup_%s_loss_rpn_cls' % name} <= set(keys)
        for key in keys:
            value = losses[key]
            total = value if isinstance(value, torch.Tensor) else sum(value)
            assert torch.isfinite(total).all(), key
    # student.loss saw: sup, strong (unless replaced), mixup (2 images, 64 px), mosaic
    assert len(calls) == first + 2
    (shape, mixed) = calls[first]
    assert tuple(shape) == (2, 3, 64, 64)
    this_iteration = torch.tensor([16., 8., 36., 24.])  # the confident box, shifted
    for sample in mixed:
        assert torch.equal(sample.gt_instances.bboxes[0], this_iteration)
        assert sample.gt_instances.labels[0] == 1
        assert len(sample.gt_instances) == 2  # and the cached view's
        torch.testing.assert_close(sample.ignored_instances.bboxes[0],
                                   torch.tensor([46., 36., 56., 48.]))
    assert len(calls[first + 1][1]) == 1 and len(calls[first + 1][1][0].gt_instances) == 4


@pytest.mark.parametrize('strong_bn_stats', [False, True])
def test_strong_views_leave_the_bn_statistics_to_the_labeled_images(model_cfg, monkeypatch,
                                                                    strong_bn_stats):
    # By default the strong views are normalised by their own batch statistics, but the
    # student's running statistics (its test-time normalisation, and the EMA teacher's)
    # follow the labeled images alone; strong_bn_stats=True lets the strong views in.
    model = _build(model_cfg, pseudo_label=dict(type='DualThreshold', high=0.8, low=0.4),
                   strong_bn_stats=strong_bn_stats)
    model.train()
    pred = InstanceData(bboxes=torch.tensor([[10., 12., 30., 28.]]), scores=torch.tensor([0.95]),
                        labels=torch.tensor([1]))
    monkeypatch.setattr(model, 'teacher_predict',
                        lambda inputs, samples: [pred.clone() for _ in samples])
    generator = torch.Generator().manual_seed(0)
    sup = [_sample(np.eye(3)) for _ in range(2)]
    for s in sup:
        s.gt_instances = InstanceData(bboxes=torch.tensor([[8., 8., 40., 40.]]),
                                      labels=torch.tensor([0]))
    inputs = {'sup': torch.randn(2, 3, 64, 64, generator=generator),
              'unsup_teacher': torch.randn(2, 3, 64, 64, generator=generator),
              # strong views far off the labeled images' statistics
              'unsup_student': 5 + 3 * torch.randn(2, 3, 64, 64, generator=generator)}
    samples = {'sup': sup, 'unsup_teacher': [_sample(np.eye(3)) for _ in range(2)],
               'unsup_student': [_sample(np.eye(3)) for _ in range(2)]}
    reference = copy.deepcopy(model.student)
    reference.train()
    reference.loss(inputs['sup'], copy.deepcopy(sup))  # the labeled batch alone
    losses = model.loss(inputs, samples)
    assert losses['unsup_loss_cls'] > 0  # the strong views did go through the student
    bn = model.student.backbone.bn1
    if strong_bn_stats:
        assert not torch.allclose(bn.running_mean, reference.backbone.bn1.running_mean)
    else:
        torch.testing.assert_close(bn.running_mean, reference.backbone.bn1.running_mean)
        torch.testing.assert_close(bn.running_var, reference.backbone.bn1.running_var)
        assert bn.num_batches_tracked == reference.backbone.bn1.num_batches_tracked
        assert bn.momentum == reference.backbone.bn1.momentum  # restored


def test_unsup_weight_scales_the_unlabeled_losses_only(model_cfg, monkeypatch):
    """``unsup_weight`` multiplies the losses on the pseudo-labeled strong views (not the
    statistics), ``sup_weight`` the labeled losses; neither touches the other's losses."""
    model = _build(model_cfg, pseudo_label=dict(type='DualThreshold', high=0.8, low=0.4),
                   unsup_weight=3.0, sup_weight=0.5)
    pred = InstanceData(bboxes=torch.tensor([[10., 12., 30., 28.]]), scores=torch.tensor([0.95]),
                        labels=torch.tensor([1]))
    monkeypatch.setattr(model, 'teacher_predict',
                        lambda inputs, samples: [pred.clone() for _ in samples])
    # a student whose loss is the mean of its input: 1 on the labeled, 2 on the strong images
    monkeypatch.setattr(model.student, 'loss', lambda inputs, samples: dict(
        loss_cls=inputs.mean(), acc=torch.tensor(50.0)))
    inputs = {'sup': torch.ones(2, 3, 64, 64), 'unsup_teacher': torch.zeros(2, 3, 64, 64),
              'unsup_student': torch.full((2, 3, 64, 64), 2.0)}
    samples = {'sup': [_sample(np.eye(3)) for _ in range(2)],
               'unsup_teacher': [_sample(np.eye(3)) for _ in range(2)],
               'unsup_student': [_sample(np.eye(3)) for _ in range(2)]}
    losses = model.loss(inputs, samples)
    assert losses['pseudo_num_confident'] == 2
    assert float(losses['sup_loss_cls']) == pytest.approx(0.5 * 1.0)
    assert float(losses['unsup_loss_cls']) == pytest.approx(3.0 * 2.0)
    assert float(losses['unsup_acc']) == 50.0 and float(losses['sup_acc']) == 50.0
