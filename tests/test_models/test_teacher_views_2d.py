"""Image teacher views (``teacher_views``): each weak image flipped within its own size, the
flipped detections flipped back and fused with the weak view's, at both call sites
(``TeacherStudent.teacher_predict`` and Soft Teacher's pseudo labels)."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.structures import InstanceData

from demo_helpers import ROOT
from ssl_det.models.soft_teacher import soft_teacher as soft_teacher_module
from ssl_det.models.utils.teacher_views import FLIPS_2D, flip_boxes_2d, flip_images
from ssl_det.registry import MODELS

MEAN_TEACHER = osp.join(ROOT, 'configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
SOFT_TEACHER = osp.join(ROOT, 'configs/demo/soft-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
MASK = osp.join(ROOT, 'configs/demo/soft-teacher_mask-rcnn_r18_fpn_demo_semi-10pct.py')
PAD = (64, 64)
SHAPES = [(40, 56), (64, 48)]  # (h, w) of each image inside the padded batch
# two objects an image (intensities 1.0 and 0.5), off every axis of symmetry
OBJECTS = [[[5., 3., 20., 11.], [30., 20., 52., 36.]], [[2., 40., 13., 60.], [25., 7., 46., 18.]]]


def build(path, **overrides):
    cfg = Config.fromfile(path).model
    for key, value in overrides.items():
        cfg.pop(key, None)  # replace whole entries (ConfigDict.update would merge them)
        cfg[key] = value
    if DefaultScope.get_current_instance() is None:
        init_default_scope('ssl_det')
    with DefaultScope.overwrite_default_scope('ssl_det'):
        return MODELS.build(cfg)


def batch():
    inputs = torch.zeros(2, 3, *PAD)
    for i, boxes in enumerate(OBJECTS):
        for (x1, y1, x2, y2), value in zip(boxes, (1.0, 0.5)):
            inputs[i, :, int(y1):int(y2), int(x1):int(x2)] = value
    samples = [DetDataSample(metainfo=dict(img_shape=s, ori_shape=s, pad_shape=PAD,
                                           batch_input_shape=PAD, scale_factor=(1., 1.),
                                           homography_matrix=np.eye(3, dtype=np.float32)))
               for s in SHAPES]
    return inputs, samples


def found(image, value):
    ys, xs = torch.nonzero((image[0] - value).abs() < 1e-6, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def test_flip_images_and_boxes_agree_within_each_images_size():
    inputs, _ = batch()
    for direction in FLIPS_2D:
        flipped = flip_images(inputs, SHAPES, direction)
        for i, ((h, w), boxes) in enumerate(zip(SHAPES, OBJECTS)):
            for box, value in zip(boxes, (1.0, 0.5)):
                expected = flip_boxes_2d(torch.tensor([box]), (h, w), direction)[0].tolist()
                assert found(flipped[i], value) == expected, (direction, i)
            assert not flipped[i, :, h:, :].any() and not flipped[i, :, :, w:].any()
        back = flip_boxes_2d(flip_boxes_2d(torch.tensor(OBJECTS[0]), SHAPES[0], direction),
                             SHAPES[0], direction)
        assert back.tolist() == OBJECTS[0]


def bright_detector(model, scores=(0.9, 0.7), hide_second_when_flipped=False, log=None):
    """A teacher that finds each object of :func:`batch` by its intensity in whatever
    image it gets (so its boxes are right only in that image's frame); ``log`` collects
    the batches it is given."""
    plain = batch()[0]

    def predict(inputs, samples, rescale=False):
        if log is not None:
            log.append(inputs.clone())
        out = []
        for i, sample in enumerate(samples):
            flipped = not torch.equal(inputs[i], plain[i])
            keep = [k for k in range(2) if not (flipped and hide_second_when_flipped and k)]
            result = DetDataSample(metainfo=sample.metainfo)
            result.pred_instances = InstanceData(
                bboxes=torch.tensor([found(inputs[i], (1.0, 0.5)[k]) for k in keep]),
                scores=torch.tensor([scores[k] for k in keep]),
                labels=torch.tensor([k + 1 for k in keep]))
            out.append(result)
        return out
    model.teacher.predict = predict


@pytest.mark.parametrize('views', [['horizontal'], ['vertical', 'diagonal'],
                                   list(FLIPS_2D)])
def test_teacher_predict_fuses_the_flipped_views_in_the_weak_frame(views):
    inputs, samples = batch()
    plain = build(MEAN_TEACHER)
    bright_detector(plain)
    expected = plain.teacher_predict(inputs, samples)
    model = build(MEAN_TEACHER, teacher_views=views)
    log = []
    bright_detector(model, log=log)
    fused = model.teacher_predict(inputs, samples)
    # each flip is of every image within its own size: the padding stays right and below
    assert len(log) == 1 + len(views)
    for given, direction in zip(log[1:], views):
        assert torch.equal(given, flip_images(inputs, SHAPES, direction))
    for f, e, boxes in zip(fused, expected, OBJECTS):
        assert e.bboxes.tolist() == boxes
        torch.testing.assert_close(f.bboxes, e.bboxes)
        torch.testing.assert_close(f.scores, e.scores)
        assert f.labels.tolist() == e.labels.tolist()
        assert f.num_views.tolist() == [1 + len(views)] * 2


def test_a_box_the_flipped_view_misses_keeps_half_its_score():
    inputs, samples = batch()
    model = build(MEAN_TEACHER, teacher_views=['horizontal'])
    bright_detector(model, hide_second_when_flipped=True)
    for f in model.teacher_predict(inputs, samples):
        assert f.scores.tolist() == pytest.approx([0.9, 0.35])
        assert f.num_views.tolist() == [2, 1]


def test_fuse_views_joins_boxes_whose_iou_reaches_the_threshold():
    """Two views' boxes of one class fuse when their IoU reaches ``iou_thr`` (here exactly
    0.5) and stay apart above it, each at half its score."""
    from ssl_det.models.utils.teacher_views import fuse_views
    views = ([torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[0.0, 0.0, 10.0, 5.0]])],
             [torch.tensor([0.8]), torch.tensor([0.6])], [torch.tensor([1]), torch.tensor([1])])
    boxes, scores, _, seen = fuse_views(*views, iou_thr=0.5, image=True)
    assert seen.tolist() == [2] and scores.tolist() == pytest.approx([0.7])
    boxes, scores, _, seen = fuse_views(*views, iou_thr=0.51, image=True)
    assert seen.tolist() == [1, 1] and scores.tolist() == pytest.approx([0.4, 0.3])
    assert boxes.tolist() == [[0, 0, 10, 10], [0, 0, 10, 5]]


def test_view_iou_thr_decides_which_boxes_of_the_views_fuse():
    """The model's ``view_iou_thr`` reaches the fusion: a flipped view that finds the
    objects 3 px off (IoU 0.67 and 0.76 with the weak view's boxes in the first image)
    fuses both at 0.6; at 0.7 the first object's two boxes stay apart at half their score."""
    inputs, samples = batch()
    plain = batch()[0]
    for thr, scores, views in ((0.6, [0.9, 0.7], [2, 2]), (0.7, [0.7, 0.45, 0.45], [2, 1, 1])):
        model = build(MEAN_TEACHER, teacher_views=['horizontal'], view_iou_thr=thr)
        bright_detector(model)
        exact = model.teacher.predict

        def off_when_flipped(images, image_samples, rescale=False, exact=exact):
            results = exact(images, image_samples, rescale)
            for i, result in enumerate(results):
                if not torch.equal(images[i], plain[i]):
                    result.pred_instances.bboxes[:, [0, 2]] += 3.0
            return results

        model.teacher.predict = off_when_flipped
        fused = model.teacher_predict(inputs, samples)[0]
        assert fused.scores.tolist() == pytest.approx(scores), thr
        assert fused.num_views.tolist() == views, thr


def test_soft_teacher_pseudo_labels_come_from_the_fused_views(monkeypatch):
    """Soft Teacher's own call site: the RoI head's detections on the weak images are
    fused with the flipped images' before selection, so a box the flipped view misses
    drops below the confident threshold (0.7 -> 0.35) and leaves the pseudo labels."""
    inputs, samples = batch()
    model = build(SOFT_TEACHER, teacher_views=['horizontal'],
                  pseudo_label=dict(type='FixedThreshold', score_thr=0.5),
                  initial_score_thr=0.5)
    bright_detector(model, hide_second_when_flipped=True)
    weak = [model.teacher.predict(inputs[i:i + 1], [s])[0].pred_instances
            for i, s in enumerate(samples)]
    monkeypatch.setattr(model.teacher.rpn_head, 'predict', lambda *a, **k: None)
    monkeypatch.setattr(model.teacher.roi_head, 'predict',
                        lambda *a, **k: [copy.deepcopy(d) for d in weak])
    monkeypatch.setattr(soft_teacher_module, 'jitter_box_uncertainty',
                        lambda roi_head, feats, boxes, *a: [torch.zeros(len(b)) for b in boxes])
    strong = [copy.deepcopy(s) for s in samples]
    model.teacher_pseudo_labels(inputs, samples, strong)
    for s, boxes in zip(strong, OBJECTS):
        assert s.gt_instances.bboxes.tolist() == [boxes[0]]
        assert s.gt_instances.labels.tolist() == [1]


def test_teacher_views_are_checked():
    with pytest.raises(ValueError, match='distinct flips'):
        build(MEAN_TEACHER, teacher_views=['left'])
    with pytest.raises(ValueError, match='distinct flips'):
        build(MEAN_TEACHER, teacher_views=['horizontal', 'horizontal'])
    with pytest.raises(ValueError, match='mask head'):
        build(MASK, teacher_views=['horizontal'])
    with pytest.raises(ValueError, match='view_iou_thr'):
        build(MEAN_TEACHER, teacher_views=['horizontal'], view_iou_thr=1.5)
