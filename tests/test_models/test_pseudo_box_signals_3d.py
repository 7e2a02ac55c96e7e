"""The head's per-box signals (``class_scores``, ``yaw_norm``) and the two TeacherStudent3D
options that read them: class-ambiguous boxes ignored (``ambiguous_ratio``) and no heading
taught where the teacher's is unsure (``min_yaw_norm``); pseudo headings that teach their
axis, not their direction (``pseudo_heading='axis'``)."""
import copy

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from ssl_det.models.point_cloud.center_head import CenterHead3D
from ssl_det.registry import MODELS
from ssl_det.structures import PointCloudDataSample, points_in_boxes, transform_boxes3d
from test_models.test_teacher_student_3d import PCR, VOXEL, build, weak_and_strong


def head():
    return MODELS.build(dict(type='CenterHead3D', in_channels=16, num_classes=3,
                             point_cloud_range=PCR, voxel_size=VOXEL, out_size_factor=2,
                             feat_channels=16))


def test_class_scores_are_every_classs_probability_at_the_boxs_peak():
    torch.manual_seed(0)
    h = head().eval()
    feats = torch.randn(2, 16, 30, 32)
    results, probs = h.predict(feats, [None, None], with_heatmap=True)
    for res, p in zip(results, probs):
        assert len(res) > 0 and res.class_scores.shape == (len(res), 3)
        own = res.class_scores.gather(1, res.labels_3d[:, None])[:, 0]
        torch.testing.assert_close(own, res.scores_3d)
        columns = p.flatten(1).T  # (H * W, C): every cell's probabilities
        for row in res.class_scores:  # the three classes of one cell, not of three cells
            assert bool(((columns - row).abs().amax(dim=1) < 1e-6).any())


def test_yaw_norm_is_the_length_of_the_regressed_sin_and_cos():
    h = head().eval()
    last = h.reg[-1]
    torch.nn.init.zeros_(last.weight)
    with torch.no_grad():
        last.bias.zero_()
        last.bias[6], last.bias[7] = 0.3, 0.4  # sin 0.3, cos 0.4: length 0.5
        last.bias[3:6] = 0.5  # sizes e^0.5 (the code's entries 3-5 are log sizes)
    res = h.predict(torch.randn(1, 16, 30, 32), [None])[0]
    assert len(res) > 0
    torch.testing.assert_close(res.yaw_norm, torch.full((len(res),), 0.5))
    torch.testing.assert_close(res.bboxes_3d[:, 6], torch.full((len(res),),
                                                               float(np.arctan2(0.3, 0.4))))


def signal_teacher(model, weak_sample, boxes, scores, labels, class_scores=None,
                   yaw_norm=None):
    pred = InstanceData(
        bboxes_3d=torch.as_tensor(transform_boxes3d(boxes, weak_sample.lidar_aug_matrix)),
        scores_3d=torch.tensor(scores), labels_3d=torch.tensor(labels))
    if class_scores is not None:
        pred.class_scores = torch.tensor(class_scores)
    if yaw_norm is not None:
        pred.yaw_norm = torch.tensor(yaw_norm)
    model.teacher_predict = lambda inputs, samples: [copy.deepcopy(pred)]


# objects 0-5 of the test scene: high, high, middle, high, (cut by the shuffle), high
SCORES = [0.9, 0.9, 0.55, 0.9, 0.9, 0.8]
LABELS = [0, 1, 2, 0, 0, 1]


def class_rows(ambiguous_other):
    """Each box's class scores: its own class at its score, one other class at
    ``ambiguous_other[k]`` of it."""
    rows = []
    for k, (s, lab) in enumerate(zip(SCORES, LABELS)):
        row = [0.02, 0.02, 0.02]
        row[lab] = s
        row[(lab + 1) % 3] = ambiguous_other[k] * s
        rows.append(row)
    return rows


def test_class_ambiguous_boxes_are_ignored_not_taught():
    points, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    model = build(middle='weight', low='off', ambiguous_ratio=0.5)
    # box 1 (high) and box 2 (middle): another class at 0.6 and 0.5 of their score;
    # box 5: at 0.45, under the ratio
    signal_teacher(model, weak, boxes, SCORES, LABELS,
                   class_rows([0.1, 0.6, 0.5, 0.1, 0.1, 0.45]))
    _, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    gt, ignored = samples[0].gt_instances_3d, samples[0].ignored_instances_3d
    assert stats['pseudo/num_ambiguous'] == 2
    assert stats['pseudo/num_high'] == 4 and stats['pseudo/num_middle'] == 0
    index = strong_pts[:, 3].long().numpy()

    def objects(instances):  # which scene objects the strong-view boxes hold
        found = []
        for box in instances.bboxes_3d.numpy():
            inside = points_in_boxes(strong_pts.numpy(), box[None])[:, 0]
            found.append(int(np.argmax(points_in_boxes(points, boxes)[index[inside]]
                                       .sum(axis=0))))
        return sorted(found)
    assert objects(gt) == [0, 3, 4, 5]
    assert objects(ignored) == [1, 2]
    assert sorted(ignored.labels_3d.tolist()) == [1, 2]
    # the picture shows what is taught: the ambiguous boxes are in no tier
    tiers = samples[0].pseudo_tiers
    assert len(tiers['high']) == 4 and len(tiers['middle']) == 0


def test_ambiguity_is_off_by_default_and_checked():
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    model = build(middle='weight', low='off')
    signal_teacher(model, weak, boxes, SCORES, LABELS, class_rows([0.9] * 6))
    _, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    assert len(samples[0].gt_instances_3d) == 6 and 'pseudo/num_ambiguous' not in stats
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match='ambiguous_ratio must be in'):
            build(ambiguous_ratio=bad)
    with pytest.raises(ValueError, match="pseudo_from='teacher' and no teacher_views"):
        build(ambiguous_ratio=0.5, teacher_views=['flip_y'])
    build(min_yaw_norm=0.5, teacher_views=['flip_y'])  # a fused box keeps its top box's
    with pytest.raises(ValueError, match="pseudo_from='teacher'"):
        build(min_yaw_norm=0.5, pseudo_from='ground_truth')
    model = build(ambiguous_ratio=0.5, low='off')
    signal_teacher(model, weak, boxes, SCORES, LABELS)  # a teacher without class_scores
    with pytest.raises(ValueError, match='class_scores'):
        model.pseudo_instances(dict(points=[weak_pts]), [weak], dict(points=[strong_pts]),
                               [strong])


def test_unsure_headings_teach_no_sin_and_cos():
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    model = build(middle='weight', low='off', min_yaw_norm=0.5)
    yaw_norm = [0.9, 0.3, 0.49, 0.5, 1.0, 0.1]
    signal_teacher(model, weak, boxes, SCORES, LABELS, yaw_norm=yaw_norm)
    _, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    gt = samples[0].gt_instances_3d
    assert len(gt) == 6 and stats['pseudo/num_yaw_masked'] == 3
    # each strong box keeps its own flag: match it by score (all distinct but the 0.9s)
    by_yaw = {}
    for s, w in zip(gt.scores_3d.tolist(), gt.yaw_weights.tolist()):
        by_yaw.setdefault(round(s, 2), []).append(w)
    assert by_yaw[0.55] == [0.0] and by_yaw[0.8] == [0.0]
    assert sorted(by_yaw[0.9]) == [0.0, 1.0, 1.0, 1.0]
    # the head: the masked boxes' sin and cos weigh 0, every other entry as before
    head_ = model.student.bbox_head
    _, _, _, _, code_w = head_.get_targets(gt, (30, 32))
    masked = gt.yaw_weights == 0
    assert bool((code_w[masked][:, 6:] == 0).all()) and bool((code_w[~masked] > 0).all())
    torch.testing.assert_close(code_w[:, :6], gt.weights[:, None].expand(-1, 6))
    _, _, _, _, ref_w = head_.get_targets_loop(gt, (30, 32))
    torch.testing.assert_close(code_w, ref_w)


def test_a_masked_heading_has_no_gradient_from_the_box_loss():
    h = head()
    box = torch.tensor([[10.0, 2.0, -1.0, 4.0, 1.7, 1.5, 0.3]])
    feats = torch.randn(1, 16, 30, 32)
    heat, reg = h(feats)
    reg = reg.detach().requires_grad_(True)
    grads = []
    for yaw_w in (1.0, 0.0):
        gt = InstanceData(bboxes_3d=box, labels_3d=torch.tensor([0]),
                          yaw_weights=torch.tensor([yaw_w]))
        sample = PointCloudDataSample()
        sample.gt_instances_3d = gt
        loss = h.loss_by_feat(heat.detach(), reg, [sample])['loss_bbox']
        grads.append(torch.autograd.grad(loss, reg)[0])
    cell = grads[0].abs().sum(dim=1)[0].flatten().argmax()
    on = grads[0][0].flatten(1)[:, cell]
    off = grads[1][0].flatten(1)[:, cell]
    assert bool((on[6:] != 0).all()) and bool((off[6:] == 0).all())
    torch.testing.assert_close(on[:6], off[:6])


def test_a_fused_box_keeps_the_yaw_norm_of_the_box_it_takes_its_heading_from():
    from ssl_det.models.utils.teacher_views import fuse_views
    box = torch.tensor([[10.0, 3.0, -1.0, 4.0, 1.8, 1.5, 0.3]])
    other = torch.tensor([[30.0, 3.0, -1.0, 4.0, 1.8, 1.5, 0.0]])
    # view 0: the object at 0.6 and a second one at 0.9; view 1: the object at 0.8, turned
    views = [torch.cat([box, other]), box + torch.tensor([0.1, 0, 0, 0, 0, 0, 0.5])]
    scores = [torch.tensor([0.6, 0.9]), torch.tensor([0.8])]
    labels = [torch.tensor([0, 0]), torch.tensor([0])]
    fused, _, _, seen, top = fuse_views(views, scores, labels, 0.3, return_top=True)
    assert seen.tolist() == [2, 1] and top.tolist() == [2, 1]  # view 1's box, then 'other'
    assert float(fused[0, 6]) == pytest.approx(0.8)  # the top box's heading
    # a view that is not its own inverse: boxes mapped back the wrong way would not fuse
    model = build(low='off', min_yaw_norm=0.5,
                  teacher_views=[dict(flip_y=True, rot=0.3, scale=1.05)])
    _, boxes, (weak_pts, weak), _ = weak_and_strong(shuffle=False)

    def predict(inputs, samples):  # the weak view sees each object with yaw_norm 0.9, the
        out = []                   # mirrored view with 0.2 and a higher score
        for k, sample in enumerate(samples):
            mine = transform_boxes3d(boxes[:2], sample.lidar_aug_matrix)
            res = type(sample)(metainfo=sample.metainfo)
            res.pred_instances_3d = InstanceData(
                bboxes_3d=torch.as_tensor(mine).float(), labels_3d=torch.tensor([0, 1]),
                scores_3d=torch.tensor([0.5, 0.7] if k == 0 else [0.9, 0.6]),
                yaw_norm=torch.tensor([0.9, 0.9] if k == 0 else [0.2, 0.2]))
            out.append(res)
        return out
    model.teacher.predict = predict
    fused = model.teacher_predict(dict(points=[weak_pts]), [weak])[0]
    assert len(fused) == 2 and fused.num_views.tolist() == [2, 2]
    # object 0: the mirrored view's box leads (0.9 > 0.5); object 1: the weak view's
    order = fused.labels_3d.tolist()
    assert fused.yaw_norm[order.index(0)] == pytest.approx(0.2)
    assert fused.yaw_norm[order.index(1)] == pytest.approx(0.9)


def heading_loss(h, yaw, predicted_yaw, axis=None):
    """The box loss, and its gradient on the predicted code, of one box of heading ``yaw``
    where the head predicts ``predicted_yaw`` (and zeros elsewhere in the code)."""
    box = torch.tensor([[10.0, 2.0, -1.0, 4.0, 1.7, 1.5, yaw]])
    gt = InstanceData(bboxes_3d=box, labels_3d=torch.tensor([0]))
    if axis is not None:
        gt.yaw_axis = torch.tensor([axis])
    sample = PointCloudDataSample()
    sample.gt_instances_3d = gt
    reg = torch.zeros(1, 8, 30, 32)
    reg[:, 6], reg[:, 7] = float(np.sin(predicted_yaw)), float(np.cos(predicted_yaw))
    reg.requires_grad_(True)
    loss = h.loss_by_feat(torch.zeros(1, 3, 30, 32), reg, [sample])['loss_bbox']
    return float(loss.detach()), torch.autograd.grad(loss, reg)[0]


def test_an_axis_only_heading_teaches_no_direction():
    h = head()
    yaw = 0.3
    # the student predicts the reverse: an axis-only box's loss is the reverse's, zero on
    # the heading, where a full one would pull it round
    for predicted in (yaw + np.pi - 0.2, yaw + 0.2):
        axis, axis_grad = heading_loss(h, yaw, predicted, axis=True)
        near = yaw + np.pi if abs(predicted - yaw) > np.pi / 2 else yaw
        same, same_grad = heading_loss(h, near, predicted)
        assert axis == pytest.approx(same)
        torch.testing.assert_close(axis_grad, same_grad)
    full, _ = heading_loss(h, yaw, yaw + np.pi - 0.2, axis=False)
    assert full > axis + 1.0 * h.loss_bbox.loss_weight  # L1 of ~2 on the sin and cos
    # the choice is the nearer one either way round: a prediction near the box's own
    # heading keeps it (checked above), and for a target given reversed the same holds
    reversed_, _ = heading_loss(h, yaw + np.pi, yaw + 0.2, axis=True)
    assert reversed_ == pytest.approx(heading_loss(h, yaw, yaw + 0.2)[0])


def test_only_the_axis_only_targets_are_reversed():
    # two targets of one heading, both predicted reversed; only the flagged one turns
    codes = torch.tensor([[0.5, 0.5, -1.0, 1.0, 0.5, 0.4, 0.6, 0.8]]).repeat(2, 1)
    reg = torch.zeros(2, 8)
    reg[:, 6:8] = torch.tensor([-0.5, -0.9])
    out = CenterHead3D.nearer_heading(reg, codes, torch.tensor([True, False]))
    torch.testing.assert_close(out[0], torch.cat([codes[0, :6], -codes[0, 6:]]))
    torch.testing.assert_close(out[1], codes[1])


def test_the_axis_flags_follow_the_targets_on_the_grid():
    h = head()
    # the second box is off the grid: no target, and its flag goes with it
    boxes = torch.tensor([[10.0, 2.0, -1.0, 4.0, 1.7, 1.5, 0.3],
                          [99.0, 2.0, -1.0, 4.0, 1.7, 1.5, 0.3],
                          [12.0, -4.0, -1.0, 4.0, 1.7, 1.5, 0.3],
                          [20.0, 5.0, -1.0, 4.0, 1.7, 1.5, 0.3]])
    gt = InstanceData(bboxes_3d=boxes, labels_3d=torch.tensor([0, 0, 0, 0]),
                      yaw_axis=torch.tensor([False, True, False, True]))
    _, _, codes, _, _ = h.get_targets(gt, (30, 32))
    assert len(codes) == 3
    assert h.yaw_axis_targets(gt, (30, 32)).tolist() == [False, False, True]
    del gt.yaw_axis
    assert h.yaw_axis_targets(gt, (30, 32)).tolist() == [False] * 3


def test_axis_only_pseudo_headings_are_flagged_on_the_strong_boxes():
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    for mode in ('full', 'axis'):
        model = build(middle='weight', low='off', pseudo_heading=mode)
        signal_teacher(model, weak, boxes, SCORES, LABELS)
        _, samples, _ = model.pseudo_instances(
            dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
        gt = samples[0].gt_instances_3d
        assert len(gt) == 6
        if mode == 'axis':
            assert gt.yaw_axis.tolist() == [True] * 6
        else:
            assert 'yaw_axis' not in gt
    with pytest.raises(ValueError, match='pseudo_heading must be one of'):
        build(pseudo_heading='direction')


def test_top_support_scales_the_teachers_scores_by_the_weak_views_points():
    from ssl_det.structures import top_gaps
    from test_models.test_teacher_student_3d import fake_teacher
    points, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=True)
    teacher_boxes = boxes.copy()
    teacher_boxes[1, 2] += 0.4  # box 1's top 0.8 m above its object's: a taller class's box
    teacher_boxes[1, 5] += 0.8
    model = build(middle='weight', low='off', top_support=0.5)
    fake_teacher(model, weak, teacher_boxes, [0.9] * 6)
    _, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    # the gaps in the scene's own frame: the weak view (mirrored) keeps every height, the
    # strong one (turned, scaled 1.07, shuffled) would not
    gaps = top_gaps(points, teacher_boxes.astype(np.float64))
    assert gaps[1] > 0.8 and (np.delete(gaps, 1) < 0.25).all()
    expected = 0.9 * np.exp(-gaps / (0.5 * teacher_boxes[:, 5]))
    gt = samples[0].gt_instances_3d
    whole = [0, 1, 2, 3, 5]  # box 4 is cut by the shuffle's border
    np.testing.assert_allclose(sorted(gt.scores_3d.tolist()), sorted(expected[whole]),
                               rtol=1e-5)
    # box 1 falls from the high tier (0.7) to the middle one, weighted by its new score
    assert stats['pseudo/num_high'] == 4 and stats['pseudo/num_middle'] == 1
    middle = gt.weights < 1
    np.testing.assert_allclose(gt.weights[middle].tolist(), [expected[1]], rtol=1e-5)
    assert 0.4 <= expected[1] < 0.7
    assert stats['pseudo/top_support'] == pytest.approx(float((expected / 0.9).mean()),
                                                        rel=1e-5)


def test_top_support_is_off_by_default_and_checked():
    from test_models.test_teacher_student_3d import fake_teacher
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    model = build(middle='weight', low='off')
    fake_teacher(model, weak, boxes, [0.9] * 6)
    _, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    assert samples[0].gt_instances_3d.scores_3d.tolist() == pytest.approx([0.9] * 6)
    assert 'pseudo/top_support' not in stats
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match='top_support must be > 0'):
            build(top_support=bad)
    with pytest.raises(ValueError, match="pseudo_from='ground_truth'"):
        build(top_support=0.5, pseudo_from='ground_truth')


def test_top_support_rescales_the_labeled_scenes_scores_for_matched_thresholds():
    """HSSDA's threshold source reads the teacher's scores on labeled scenes: with
    top_support they are rescaled as the unlabeled views' are, from the labeled points."""
    from ssl_det.structures import top_gaps
    from test_models.test_teacher_student_3d import fake_teacher
    points, boxes, (weak_pts, weak), _ = weak_and_strong(shuffle=False)
    labeled = copy.deepcopy(weak)
    labeled.gt_instances_3d = InstanceData(
        bboxes_3d=torch.as_tensor(transform_boxes3d(boxes, weak.lidar_aug_matrix)),
        labels_3d=torch.arange(len(boxes)) % 3)
    model = build(top_support=0.5, pseudo_label=dict(
        type='MatchedScoreThreshold', num_classes=3, init_high=0.5, init_low=0.3,
        min_count=100, momentum=0.5, num_bins=1000))
    fake_teacher(model, labeled, boxes, [0.9] * 6)
    model.update_from_labeled(dict(points=[weak_pts]), [labeled])
    gaps = top_gaps(points, boxes.astype(np.float64))
    expected = 0.9 * np.exp(-gaps / (0.5 * boxes[:, 5]))
    hist = model.pseudo_label.score_hist
    assert hist.sum().item() == 6
    for label, score in zip((np.arange(6) % 3).tolist(), expected.tolist()):
        assert hist[label, int(score * 1000)] >= 1
    assert hist[:, 900].sum().item() == 0  # no raw score reached the histogram
