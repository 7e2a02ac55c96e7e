"""Dense distillation in TeacherStudent3D (``dense_weight``): the teacher's heatmap reaches
the strong view's cells through the same weak-to-strong map and shuffle as its boxes, the
quality focal loss reads only the valid cells, and ``dense_weight`` scales that loss alone."""
import copy

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from ssl_det.datasets.transforms import GlobalRotScaleTrans, RandomFlip3D
from ssl_det.models.point_cloud.center_head import CenterHead3D
from ssl_det.structures import transform_boxes3d, weak_to_strong_matrix
from ssl_det.structures.bev_shuffle import shuffle_boxes

from test_models.test_teacher_student_3d import (build, detector_cfg, joint_batch_case, scene,
                                                 view, weak_and_strong)


def blobs(head, boxes, labels, shape, radius=1.5):
    """A (3, H, W) heatmap with a Gaussian peak of 1 at each box's centre, in its class's
    plane (cell centres within ``radius`` cells get ``exp(-d^2 / 2)``)."""
    h, w = shape
    centres = head.cell_centres(h, w).view(h, w, 2)
    heat = torch.zeros(3, h, w)
    for box, label in zip(torch.as_tensor(boxes), labels):
        d = ((centres - box[:2]) / torch.tensor(head.cell)).norm(dim=-1)
        heat[label] = torch.maximum(heat[label], torch.exp(-d ** 2 / 2) * (d <= radius))
    return heat


def centre_cells(head, boxes, shape):
    """(row, col) of the cell holding each box's centre, as the head's targets place it."""
    cx, cy = head._cells(boxes)
    return (cy.floor().long().clamp(0, shape[0] - 1),
            cx.floor().long().clamp(0, shape[1] - 1))


def dense_teacher(model, weak, boxes, scores, shape):
    """The teacher 'predicts' the objects in the weak view's frame, with a heatmap of a
    peak at each of them there."""
    weak_boxes = torch.as_tensor(transform_boxes3d(boxes, weak.lidar_aug_matrix))
    labels = torch.arange(len(boxes)) % 3
    pred = InstanceData(bboxes_3d=weak_boxes, scores_3d=torch.tensor(scores), labels_3d=labels)
    heat = blobs(model.student.bbox_head, weak_boxes, labels, shape)

    def predict(inputs, samples, with_heatmap=False):
        assert with_heatmap, 'dense distillation asked the teacher for no heatmap'
        return [copy.deepcopy(pred)], [heat.clone()]
    model.teacher_predict = predict
    return heat


def feature_shape(model, points):
    heat, _ = model.student._forward(dict(points=[points]))
    return tuple(heat.shape[-2:])


@pytest.mark.parametrize('shuffle', [False, True])
def test_teacher_heatmap_peaks_land_on_the_strong_views_objects(shuffle):
    """At the call site: pseudo_instances gives each strong sample the teacher's heatmap on
    the strong cells, a peak on each whole object's strong cell, nothing strong elsewhere
    (a map moved the wrong way, or without the shuffle, puts its peaks elsewhere)."""
    points, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=shuffle)
    model = build(middle='off', low='off', dense_weight=1.0)
    shape = feature_shape(model, strong_pts)
    dense_teacher(model, weak, boxes, [0.9] * 6, shape)
    _, samples, _ = model.pseudo_instances(dict(points=[weak_pts]), [weak],
                                           dict(points=[strong_pts]), [strong])
    soft, valid = samples[0].soft_heatmap, samples[0].soft_heatmap_valid
    assert soft.shape == (3, *shape) and valid.shape == shape and valid.dtype == torch.bool
    strong_boxes = transform_boxes3d(boxes, strong.lidar_aug_matrix)
    whole = np.ones(len(boxes), bool)
    if shuffle:
        strong_boxes, whole = shuffle_boxes(strong_boxes, strong.bev_shuffle)
    head = model.student.bbox_head
    ys, xs = centre_cells(head, torch.as_tensor(strong_boxes), shape)
    labels = np.arange(len(boxes)) % 3
    assert whole.sum() == (5 if shuffle else 6)
    expected = torch.zeros(3, *shape, dtype=torch.bool)
    for k in np.flatnonzero(whole):
        assert soft[labels[k], ys[k], xs[k]] > 0.5, k
        lo_y, lo_x = max(int(ys[k]) - 2, 0), max(int(xs[k]) - 2, 0)
        expected[labels[k], lo_y:ys[k] + 3, lo_x:xs[k] + 3] = True
    if not shuffle:  # with a shuffle the cut box's pieces also keep their heat
        assert not (soft > 0.5)[~expected].any()
    # cells whose source lies outside the weak view's map (the rotation's corners) are out
    assert 0 < int(valid.sum()) < valid.numel()


def test_warp_heatmap_reads_the_weak_view_where_each_strong_cell_came_from():
    """A weak view that is not its own inverse (rotated and scaled): a strong cell reads the
    teacher's map at the weak position the inverse map gives, and a position off the weak
    map is invalid with zero heat."""
    points, boxes = scene()
    _, weak = view(points, boxes, [GlobalRotScaleTrans(
        rot_range=(-0.25, -0.25), scale_range=(0.9, 0.9), translation_std=(0, 0, 0))])
    _, strong = view(points, boxes, [RandomFlip3D(flip_y_ratio=1.0)])
    head = build().student.bbox_head
    shape = (32, 32)
    weak_boxes = torch.as_tensor(transform_boxes3d(boxes, weak.lidar_aug_matrix))
    labels = [k % 3 for k in range(len(boxes))]
    heat = blobs(head, weak_boxes, labels, shape)
    w2s = weak_to_strong_matrix(weak.lidar_aug_matrix, strong.lidar_aug_matrix)
    soft, valid = head.warp_heatmap(heat, w2s)
    strong_boxes = torch.as_tensor(transform_boxes3d(boxes, strong.lidar_aug_matrix))
    ys, xs = centre_cells(head, strong_boxes, shape)
    wy, wx = centre_cells(head, weak_boxes, shape)
    on_map = [k for k in range(len(boxes)) if valid[ys[k], xs[k]]
              and heat[labels[k], wy[k], wx[k]] > 0.5]
    assert len(on_map) >= 4
    for k in on_map:
        assert soft[labels[k], ys[k], xs[k]] > 0.5, k
    assert (soft[:, ~valid] == 0).all() and not valid.all()
    # the wrong direction (the inverse map) puts the peaks elsewhere
    wrong, _ = head.warp_heatmap(heat, np.linalg.inv(w2s))
    assert sum(float(wrong[labels[k], ys[k], xs[k]]) > 0.5 for k in on_map) < len(on_map) / 2


def test_soft_heatmap_loss_reads_valid_cells_only_and_is_least_at_the_target():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 8, 8) ** 4
    valid = torch.rand(2, 8, 8) > 0.3
    at_target = torch.logit(target.clamp(1e-6, 1 - 1e-6))
    loss = CenterHead3D.loss_soft_heatmap
    best = loss(at_target, target, valid)
    off = at_target + torch.randn_like(at_target)
    assert float(best) < 1e-6 < float(loss(off, target, valid))
    # invalid cells do not count: change the logits there only
    moved = torch.where(valid[:, None], off, off + 5.0)
    torch.testing.assert_close(loss(moved, target, valid), loss(off, target, valid))
    # divided by the targets' sum over the valid cells: n cells of target 1 at logit 0 each
    # cost log(2) * 0.5 ** 2 whatever n is; one cell of target 0.2 is divided by 1, not 0.2
    for n in (4, 10):
        some = (torch.arange(16) < n).view(1, 4, 4)
        torch.testing.assert_close(loss(torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4), some),
                                   torch.tensor(np.log(2) * 0.25, dtype=torch.float32))
    one = torch.zeros(1, 4, 4, dtype=torch.bool)
    one[0, 1, 2] = True
    low = torch.full((1, 1, 4, 4), 0.2)
    p = torch.tensor(0.5)
    expected = -(0.2 * p.log() + 0.8 * (1 - p).log()) * (p - 0.2) ** 2
    torch.testing.assert_close(loss(torch.zeros(1, 1, 4, 4), low, one), expected)
    assert float(loss(off, target, torch.ones_like(valid))) != float(loss(off, target, valid))


def test_dense_weight_scales_the_soft_heatmap_loss_alone_and_it_trains_the_head():
    inputs, samples, model, _ = joint_batch_case()
    shape = feature_shape(model, inputs['unsup_student']['points'][0])
    model.student.eval()  # BatchNorm from running statistics: the same losses twice
    _, boxes = scene()
    losses = {}
    for weight in (2.0, 0.5):
        model.dense_weight = weight
        dense_teacher(model, samples['unsup_teacher'][0], boxes,
                      [0.9, 0.55, 0.9, 0.5, 0.9, 0.6], shape)
        losses[weight] = model.loss(copy.deepcopy(inputs), copy.deepcopy(samples))
    heavy, light = losses[2.0], losses[0.5]
    assert float(light['unsup_loss_heatmap_soft']) > 0
    torch.testing.assert_close(heavy['unsup_loss_heatmap_soft'],
                               4 * light['unsup_loss_heatmap_soft'])
    for key in ('unsup_loss_heatmap', 'unsup_loss_bbox', 'sup_loss_heatmap'):
        torch.testing.assert_close(heavy[key], light[key])
    assert 'sup_loss_heatmap_soft' not in heavy  # the labeled scenes have no soft target
    model.zero_grad()
    heavy['unsup_loss_heatmap_soft'].backward()
    grad = model.student.bbox_head.heatmap[-1].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert model.student.bbox_head.reg[-1].weight.grad is None


def test_without_dense_weight_no_heatmap_is_asked_for_or_learned():
    inputs, samples, model, _ = joint_batch_case()
    losses = model.loss(copy.deepcopy(inputs), copy.deepcopy(samples))
    assert not any('soft' in k for k in losses)


def test_teacher_heatmap_is_the_map_its_boxes_were_decoded_from():
    """``teacher_predict(with_heatmap=True)``: the same boxes as without, and each box's
    score is the heatmap's probability at its class and cell."""
    _, _, (weak_pts, weak), _ = weak_and_strong(shuffle=False)
    model = build(dense_weight=1.0)
    torch.manual_seed(3)
    for p in model.teacher.bbox_head.heatmap.parameters():
        torch.nn.init.normal_(p, std=0.5)
    reg = model.teacher.bbox_head.reg[-1]  # every box centred on its peak's cell
    torch.nn.init.zeros_(reg.weight)
    torch.nn.init.zeros_(reg.bias)
    reg.bias.data[:2] = 0.5
    model.teacher.bbox_head.test_cfg['score_thr'] = 0.0
    plain = model.teacher_predict(dict(points=[weak_pts]), [weak])
    preds, heatmaps = model.teacher_predict(dict(points=[weak_pts]), [weak], with_heatmap=True)
    assert len(preds[0]) > 0
    torch.testing.assert_close(preds[0].bboxes_3d, plain[0].bboxes_3d)
    head = model.teacher.bbox_head
    heat = heatmaps[0]
    assert heat.min() >= 0 and heat.max() <= 1  # probabilities, not logits
    ys, xs = centre_cells(head, preds[0].bboxes_3d, tuple(heat.shape[-2:]))
    torch.testing.assert_close(heat[preds[0].labels_3d, ys, xs], preds[0].scores_3d)


def test_dense_weight_is_checked():
    with pytest.raises(ValueError, match='dense_weight must be >= 0'):
        build(dense_weight=-1.0)
    from ssl_det.registry import MODELS

    class NoWarp(CenterHead3D):
        warp_heatmap = None
    MODELS.register_module(name='_NoWarpHead', module=NoWarp, force=True)
    cfg = detector_cfg()
    cfg['bbox_head'] = dict(cfg['bbox_head'], type='_NoWarpHead')
    with pytest.raises(ValueError, match='warp_heatmap'):
        build(dense_weight=1.0, detector=cfg)
    build(dense_weight=0.0, detector=cfg)
