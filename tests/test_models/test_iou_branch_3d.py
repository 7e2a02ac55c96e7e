"""CenterHead3D(iou_branch=...): one more channel of the box code predicts the 3D IoU of the
box decoded at a cell; it learns at the labels' centre cells and at the head's own peaks
(0 on no object of the peak's class), decoding scores ``score ** (1 - p) * iou ** p``, and a
teacher-student's strong scenes do not teach it."""
import copy

import pytest
import torch
from mmengine.structures import InstanceData

from ssl_det.structures import PointCloudDataSample
from test_models.test_pillar_detector import scene, small_detector
from test_models.test_teacher_student_3d import build, detector_cfg, joint_batch_case

SHAPE = (32, 32)
BOXES = torch.tensor([[8.0, 3.0, -1.0, 4.0, 1.7, 1.5, 0.0],     # a car along x
                      [14.0, -5.0, -0.8, 0.7, 0.6, 1.8, -1.0],   # a pedestrian
                      [18.0, 4.0, -0.85, 1.8, 0.6, 1.7, 2.5]])   # a cyclist


def head(**iou):
    return small_detector(heading='double_angle', iou_branch=dict(iou)).bbox_head


def sample(boxes=BOXES, labels=(0, 1, 2)):
    ds = PointCloudDataSample()
    ds.gt_instances_3d = InstanceData(bboxes_3d=boxes.clone(), labels_3d=torch.tensor(labels))
    return ds


def exact_maps(h, ds, peaks=()):
    """Maps whose code at each label's centre cell is the label's own code (its box decodes
    there exactly), and whose heatmap has a peak (logit 5, else -5) at each
    ``(class, row, column)`` of ``peaks``."""
    _, weight, codes, index, _ = h.get_targets(ds.gt_instances_3d, SHAPE)
    reg = torch.zeros(1, h.code_size + 1, *SHAPE)
    reg.view(1, h.code_size + 1, -1)[0, :h.code_size, index] = codes.T
    heat = torch.full((1, 3, *SHAPE), -5.0)
    for c, y, x in peaks:
        heat[0, c, y, x] = 5.0
    return heat, reg, weight, index


def cell(box):
    return int((box[1] + 12.8) / 0.8), int(box[0] / 0.8)  # (row, column)


def test_the_head_has_one_more_code_channel_and_checks_its_options():
    h = head()
    assert h.reg[-1].out_channels == h.code_size + 1 == 11
    assert h.iou_cfg == dict(loss_weight=1.0, num_peaks=16, power=0.5)
    assert small_detector(iou_branch=True).bbox_head.iou_cfg['power'] == 0.5
    assert small_detector().bbox_head.reg[-1].out_channels == 8
    with pytest.raises(ValueError, match='power'):
        head(power=1.5)
    with pytest.raises(ValueError, match='loss_weight, num_peaks and power'):
        head(alpha=0.5)


def test_targets_are_the_decoded_boxes_iou_at_labels_and_at_peaks():
    h = head(num_peaks=3)
    ds = sample()
    car_row, car_col = cell(BOXES[0])
    far = (30, 2)  # no object there
    # peaks: the car's cell as a car, the pedestrian's cell as a car (wrong class), and an
    # empty cell as a cyclist
    ped_row, ped_col = cell(BOXES[1])
    heat, reg, weight, index = exact_maps(
        h, ds, peaks=[(0, car_row, car_col), (0, ped_row, ped_col), (2, *far)])
    # the car's code put 2 m ahead along its length (4 m): IoU 2 / 6
    reg[0, 0, car_row, car_col] += 2.0 / 0.8
    logits, targets = h.iou_targets(heat, reg, [ds], weight[None], [index])
    assert len(targets) == 3 + 3  # three labels, three peaks
    torch.testing.assert_close(targets[:3], torch.tensor([1 / 3, 1.0, 1.0]), atol=1e-5,
                               rtol=0)
    # the car peak on its shifted box; the pedestrian's cell taken for a car and the empty
    # cell: 0
    peaks = sorted(targets[3:].tolist(), reverse=True)
    assert peaks[0] == pytest.approx(1 / 3, abs=1e-5) and peaks[1:] == [0.0, 0.0]
    torch.testing.assert_close(logits, torch.zeros(6))  # the IoU channel is 0 here
    # a peak in an ignored region (heatmap loss weight 0) is left out
    weight[far] = 0
    _, left = h.iou_targets(heat, reg, [ds], weight[None], [index])
    assert len(left) == 5


def test_loss_iou_is_the_bce_of_the_iou_channel_alone():
    h = head(num_peaks=3, loss_weight=2.0)
    ds = sample()
    heat, reg, weight, index = exact_maps(h, ds)
    gen = torch.Generator().manual_seed(0)
    reg = (reg + 0.05 * torch.randn(reg.shape, generator=gen)).requires_grad_()
    losses = h.loss_by_feat(heat, reg, [ds])
    logits, targets = h.iou_targets(heat, reg, [ds], weight[None], [index])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets) * 2.0
    torch.testing.assert_close(losses['loss_iou'], expected)
    assert 0 < float(targets[:3].min()) and float(targets[:3].max()) < 1  # noisy codes
    losses['loss_iou'].backward()
    grad = reg.grad[0].flatten(1).abs().sum(dim=1)
    assert grad[h.code_size] > 0 and float(grad[:h.code_size].sum()) == 0.0
    # the box code's L1 loss reads the code channels only: the same as a head without it
    plain = small_detector(heading='double_angle').bbox_head
    torch.testing.assert_close(plain.loss_by_feat(heat, reg[:, :h.code_size], [ds])['loss_bbox'],
                               losses['loss_bbox'])


def test_decoded_scores_are_iou_aware():
    h = head(power=0.3)
    h.test_cfg.update(score_thr=0.0, nms_thr=1.0, max_num=100)
    h.eval()
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(2, 64, 32, 32, generator=gen)
    with torch.no_grad():
        h.reg[-1].bias[h.code_size] = 0.7  # IoUs away from 0.5
    for pred in h.predict(feats, [None, None]):
        heat = pred.class_scores.gather(1, pred.labels_3d[:, None])[:, 0]
        assert bool((pred.iou_scores - 0.5).abs().max() > 0.05)
        torch.testing.assert_close(pred.scores_3d,
                                   heat.pow(0.7) * pred.iou_scores.pow(0.3))
        assert bool((pred.scores_3d[:-1] >= pred.scores_3d[1:]).all())
    # the same head without the IoU in its score gives the heatmap's scores
    h.iou_cfg['power'] = 0.0
    for pred in h.predict(feats, [None, None]):
        heat = pred.class_scores.gather(1, pred.labels_3d[:, None])[:, 0]
        torch.testing.assert_close(pred.scores_3d, heat)


def test_a_detector_learns_the_iou_of_its_boxes():
    """Trained on one scene, the IoU branch rates the boxes on its objects high and the
    boxes elsewhere low."""
    torch.manual_seed(0)
    model = small_detector(heading='double_angle', iou_branch=dict(num_peaks=8))
    points, ds = scene()
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(optim, [40], gamma=0.1)
    model.train()
    for _ in range(60):
        losses = model.loss(dict(points=[points, points]), [ds, ds])
        assert torch.isfinite(losses['loss_iou'])
        optim.zero_grad()
        sum(losses.values()).backward()
        optim.step()
        sched.step()
    model.eval()
    model.bbox_head.test_cfg.update(score_thr=0.0)
    pred = model.predict(dict(points=[points]), [ds.clone()])[0].pred_instances_3d
    gt = ds.gt_instances_3d.bboxes_3d
    from ssl_det.ops import iou_3d
    best = iou_3d(pred.bboxes_3d.double(), gt.double()).amax(dim=1).float()
    on, off = pred.iou_scores[best > 0.5], pred.iou_scores[best == 0]
    assert len(on) >= 3 and len(off) >= 3
    assert float(on.min()) > float(off.max())
    assert float(on.min()) > 0.5


def test_the_strong_scenes_do_not_teach_the_iou_branch():
    """A teacher-student with the IoU branch: the labeled scenes' loss has ``loss_iou``, the
    pseudo-labeled strong scenes' has none (in one pass or two)."""
    inputs, samples, separate, joint = joint_batch_case()
    cfg = detector_cfg()
    cfg['bbox_head']['iou_branch'] = dict(num_peaks=4)
    for joint_batch in (False, True):
        model = build(detector=copy.deepcopy(cfg), middle='weight', low='off',
                      joint_batch=joint_batch)
        model.teacher_predict = separate.teacher_predict
        losses = model.loss(copy.deepcopy(inputs), copy.deepcopy(samples))
        assert 'sup_loss_iou' in losses and torch.isfinite(losses['sup_loss_iou'])
        assert 'unsup_loss_heatmap' in losses and float(losses['pseudo_num_high']) >= 2
        assert not any('iou' in k for k in losses if k.startswith('unsup_'))

