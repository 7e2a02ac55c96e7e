"""TeacherStudent3D: the teacher's boxes land on the strong view's objects (flip + rotation +
scaling + patch shuffle), the tiers supervise as configured, the removed points are exactly
those in low boxes, and the patch shuffle keeps every point and whole box."""
import copy

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

import ssl_det.models  # noqa: F401
from ssl_det.datasets.transforms import (BEVPatchShuffle, GlobalRotScaleTrans,
                                         PackPointCloudInputs, RandomFlip3D)
from ssl_det.registry import MODELS
from ssl_det.structures import points_in_boxes
from ssl_det.structures.bev_shuffle import (make_shuffle, shuffle_boxes, shuffle_points,
                                            unshuffle_bev_map, unshuffle_points)

PCR = [0, -12.8, -3, 25.6, 12.8, 1]
VOXEL = [0.4, 0.4, 4]
META = ('frame_id', 'lidar_aug_matrix', 'bev_shuffle', 'flip_x', 'flip_y')


def detector_cfg():
    return dict(
        type='PillarDetector',
        voxelizer=dict(type='PillarVoxelizer', voxel_size=VOXEL, point_cloud_range=PCR),
        voxel_encoder=dict(type='PillarFeatureNet', in_channels=4, feat_channels=8,
                           voxel_size=VOXEL, point_cloud_range=PCR),
        middle_encoder=dict(type='PillarScatter', in_channels=8),
        backbone=dict(type='BEVBackbone', in_channels=8, out_channels=(8, 16), layers=(1, 1),
                      strides=(2, 2)),
        neck=dict(type='BEVNeck', in_channels=(8, 16), out_channels=(16, 16),
                  upsample_strides=(1, 2)),
        bbox_head=dict(type='CenterHead3D', in_channels=32, num_classes=3,
                       point_cloud_range=PCR, voxel_size=VOXEL, out_size_factor=2))


def build(**kwargs):
    cfg = dict(type='TeacherStudent3D', detector=detector_cfg(),
               pseudo_label=dict(type='DualThreshold', high=0.7, low=0.4))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def scene(seed=0):
    """Objects of random yaw with points inside (column 3 holds each point's index)."""
    rng = np.random.default_rng(seed)
    boxes = np.array([[4.0, -8.0, -1.0, 3.8, 1.6, 1.5, 0.4],    # quadrants of the 2x2 grid
                      [18.0, -7.0, -1.0, 0.7, 0.6, 1.8, -1.2],
                      [5.0, 6.0, -1.0, 1.8, 0.6, 1.7, 2.0],
                      [19.0, 3.0, -1.0, 4.0, 1.7, 1.5, -2.6],
                      [12.8, 3.0, -1.0, 4.0, 1.7, 1.5, 0.1],     # cut by the x = 12.8 border
                      [8.0, -6.0, -1.0, 3.9, 1.6, 1.5, 1.0]], np.float32)
    parts = []
    for b in boxes:
        local = rng.uniform(-0.45, 0.45, (60, 3)) * b[3:6]
        c, s = np.cos(b[6]), np.sin(b[6])
        parts.append(local @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + b[:3])
    ground = np.c_[rng.uniform(0.5, 25, 400), rng.uniform(-12, 12, 400), np.full(400, -2.2)]
    xyz = np.concatenate(parts + [ground])
    points = np.c_[xyz, np.arange(len(xyz))].astype(np.float32)
    return points, boxes


def view(points, boxes, transforms):
    results = dict(points=points.copy(), gt_bboxes_3d=boxes[:0], gt_labels_3d=np.zeros(0, int),
                   lidar_aug_matrix=np.eye(4), frame_id='f0')
    for t in transforms:
        results = t(results)
    packed = PackPointCloudInputs(meta_keys=META)(results)
    return packed['inputs']['points'], packed['data_samples']


def weak_and_strong(seed=9, shuffle=True, mode='move_boxes'):
    points, boxes = scene()
    np.random.seed(seed)
    weak_pts, weak = view(points, boxes, [RandomFlip3D(flip_y_ratio=1.0)])
    strong_t = [RandomFlip3D(flip_y_ratio=0.0, flip_x_ratio=0.0),
                GlobalRotScaleTrans(rot_range=(0.3, 0.3), scale_range=(1.07, 1.07),
                                    translation_std=(0, 0, 0))]
    if shuffle:
        strong_t.append(BEVPatchShuffle(point_cloud_range=PCR, grid=(2, 2), mode=mode))
    strong_pts, strong = view(points, boxes, strong_t)
    if shuffle:  # the seed draws a permutation that moves every patch
        assert all(p != k for k, p in enumerate(strong.bev_shuffle['perm']))
    return points, boxes, (weak_pts, weak), (strong_pts, strong)


def fake_teacher(model, weak_sample, boxes, scores):
    """The teacher 'predicts' the objects, in the weak view's frame, with given scores."""
    from ssl_det.structures import transform_boxes3d
    pred = InstanceData(
        bboxes_3d=torch.as_tensor(transform_boxes3d(boxes, weak_sample.lidar_aug_matrix)),
        scores_3d=torch.tensor(scores), labels_3d=torch.arange(len(boxes)) % 3)
    model.teacher_predict = lambda inputs, samples: [copy.deepcopy(pred)]


def test_shuffle_keeps_every_point_and_whole_box():
    points, boxes = scene()
    info = make_shuffle(PCR, (2, 2), [3, 2, 0, 1])
    moved = shuffle_points(points, info)
    assert moved.shape == points.shape
    np.testing.assert_allclose(unshuffle_points(moved, info), points, atol=1e-4)
    moved_boxes, whole = shuffle_boxes(boxes, info)
    assert whole.tolist() == [True, True, True, True, False, True]
    inside_before = points_in_boxes(points, boxes)
    inside_after = points_in_boxes(moved, moved_boxes)
    assert (inside_before[:, whole] == inside_after[:, whole]).all()
    # the translation is not the identity (a test with perm = identity could not fail)
    assert not np.allclose(moved_boxes[whole, :2], boxes[whole, :2])


@pytest.mark.parametrize('shuffle', [False, True])
def test_pseudo_boxes_land_on_the_strong_views_objects(shuffle):
    points, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=shuffle)
    model = build(middle='off', low='off')
    fake_teacher(model, weak, boxes, [0.9] * 6)
    _, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    gt = samples[0].gt_instances_3d
    expected_whole = 5 if shuffle else 6
    assert len(gt) == expected_whole and stats['pseudo/num_high'] == expected_whole
    # every pseudo box holds exactly the points of its object (identified by index)
    index = strong_pts[:, 3].long().numpy()
    for box in gt.bboxes_3d.numpy():
        inside = points_in_boxes(strong_pts.numpy(), box[None])[:, 0]
        owners = points_in_boxes(points, boxes)[index[inside]]
        obj = int(np.argmax(owners.sum(axis=0)))
        assert inside.sum() == points_in_boxes(points, boxes[obj:obj + 1]).sum() == 60
    if shuffle:  # the cut box is ignored, in pieces, not supervised
        assert len(samples[0].ignored_instances_3d) >= 2


def test_pseudo_boxes_land_on_the_strong_views_objects_from_a_rotated_weak_view():
    """The weak→strong map undoes the weak view's own map: with a weak view that is not its
    own inverse (rotated and scaled, unlike a flip), the teacher's boxes still land on the
    strong view's objects."""
    points, boxes = scene()
    weak_pts, weak = view(points, boxes, [GlobalRotScaleTrans(
        rot_range=(-0.6, -0.6), scale_range=(0.9, 0.9), translation_std=(0, 0, 0))])
    strong_pts, strong = view(points, boxes, [
        RandomFlip3D(flip_y_ratio=1.0),
        GlobalRotScaleTrans(rot_range=(0.3, 0.3), scale_range=(1.07, 1.07),
                            translation_std=(0, 0, 0))])
    model = build(middle='off', low='off')
    fake_teacher(model, weak, boxes, [0.9] * 6)
    _, samples, _ = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    gt = samples[0].gt_instances_3d
    assert len(gt) == 6
    # pseudo box k holds exactly object k's 60 points (identified by their index column)
    inside = points_in_boxes(strong_pts.numpy(), gt.bboxes_3d.numpy())
    index = strong_pts[:, 3].long().numpy()
    for k in range(6):
        assert sorted(index[inside[:, k]]) == list(range(60 * k, 60 * k + 60))


def labeled_weak_view():
    """A rotated and scaled weak view that keeps its labels, and a flipped, rotated and
    scaled strong view without them."""
    points, boxes = scene()
    labels = np.array([0, 1, 2, 0, 0, 2])
    results = dict(points=points.copy(), gt_bboxes_3d=boxes.copy(), gt_labels_3d=labels,
                   lidar_aug_matrix=np.eye(4), frame_id='f0')
    results = GlobalRotScaleTrans(rot_range=(-0.6, -0.6), scale_range=(0.9, 0.9),
                                  translation_std=(0, 0, 0))(results)
    packed = PackPointCloudInputs(meta_keys=META)(results)
    strong_pts, strong = view(points, boxes, [
        RandomFlip3D(flip_y_ratio=1.0),
        GlobalRotScaleTrans(rot_range=(0.3, 0.3), scale_range=(1.07, 1.07),
                            translation_std=(0, 0, 0))])
    return points, boxes, labels, (packed['inputs']['points'], packed['data_samples']), \
        (strong_pts, strong)


def test_ground_truth_pseudo_labels_are_the_weak_views_labels_on_the_strong_objects():
    """``pseudo_from='ground_truth'`` (a diagnostic): the weak view's own labels, in its
    rotated and scaled frame, replace the teacher's boxes and land on the strong view's
    objects as high boxes; the strong view itself holds no labels here."""
    points, boxes, labels, (weak_pts, weak), (strong_pts, strong) = labeled_weak_view()
    assert len(strong.gt_instances_3d) == 0
    model = build(middle='off', low='off', pseudo_from='ground_truth')
    model.teacher_predict = None  # never asked
    _, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    gt = samples[0].gt_instances_3d
    assert stats['pseudo/num_high'] == 6 and gt.labels_3d.tolist() == labels.tolist()
    assert gt.weights.tolist() == [1.0] * 6
    inside = points_in_boxes(strong_pts.numpy(), gt.bboxes_3d.numpy())
    index = strong_pts[:, 3].long().numpy()
    for k in range(6):
        assert sorted(index[inside[:, k]]) == list(range(60 * k, 60 * k + 60))
    bare = type(weak)(metainfo=weak.metainfo)
    with pytest.raises(ValueError, match="needs the unlabeled scenes' labels"):
        model.pseudo_instances(dict(points=[weak_pts]), [bare], dict(points=[strong_pts]),
                               [view(points, boxes, [])[1]])
    with pytest.raises(ValueError, match='pseudo_from must be'):
        build(pseudo_from='oracle')
    with pytest.raises(ValueError, match='not its heatmap'):
        build(pseudo_from='ground_truth', dense_weight=1.0)


def mixed_teacher(model, weak, boxes, dropped=False):
    """Teacher boxes, in the weak frame: object 0 high, 1 middle, 2 low (all right); 3 high
    with the wrong class; 5 high 3 m off; a high and a low box on empty ground; with
    ``dropped``, also a box below every tier on empty ground. Object 4 has none."""
    from ssl_det.structures import transform_boxes3d
    off = boxes[5].copy()
    off[0] += 3.0
    ground = np.array([[12.0, -10.0, -2.0, 1.0, 1.0, 1.0, 0.0],
                       [22.0, 10.0, -2.0, 1.0, 1.0, 1.0, 0.0]], np.float32)
    world = np.concatenate([boxes[[0, 1, 2, 3]], off[None], ground])
    scores, labels = [0.9, 0.5, 0.2, 0.9, 0.9, 0.9, 0.2], [0, 1, 2, 1, 2, 1, 1]
    if dropped:
        world = np.concatenate([world, ground[:1] + [[0, 5, 0, 0, 0, 0, 0]]])
        scores, labels = scores + [0.05], labels + [0]
    pred = InstanceData(
        bboxes_3d=torch.as_tensor(transform_boxes3d(world, weak.lidar_aug_matrix)),
        scores_3d=torch.tensor(scores), labels_3d=torch.tensor(labels))
    model.teacher_predict = lambda inputs, samples: [copy.deepcopy(pred)]
    return ground


def owned_points(points, boxes, strong_pts, strong_boxes):
    """For each strong-view box, the indices of the scene's objects whose points it holds."""
    index = strong_pts[:, 3].long().numpy()
    inside = points_in_boxes(strong_pts.numpy(), strong_boxes.numpy())
    owners = points_in_boxes(points, boxes)
    return [sorted(set(np.flatnonzero(owners[index[inside[:, k]]].any(axis=0)).tolist()))
            for k in range(inside.shape[1])]


def test_teacher_plus_missed_adds_the_objects_no_high_or_middle_box_finds():
    """``pseudo_from='teacher_plus_missed'`` (a diagnostic): the labeled objects that no high
    or middle box of their class finds (2: only a low box; 3: a wrong class; 4: no box; 5:
    a box 3 m off) join the teacher's boxes as weight-1 high boxes on the strong view's
    objects; the teacher's own boxes are all kept, and the low box on object 2 no longer
    removes its points."""
    points, boxes, labels, (weak_pts, weak), (strong_pts, strong) = labeled_weak_view()
    model = build(middle='weight', low='remove_points', low_score_thr=0.1,
                  pseudo_from='teacher_plus_missed', pseudo_match_iou=[0.5, 0.25, 0.25])
    mixed_teacher(model, weak, boxes)
    out, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    assert stats['pseudo/num_mixed'] == 4
    assert stats['pseudo/num_high'] == 4 + 4 and stats['pseudo/num_middle'] == 1
    gt = samples[0].gt_instances_3d
    added = gt[-4:]
    assert added.labels_3d.tolist() == labels[[2, 3, 4, 5]].tolist()
    assert added.weights.tolist() == [1.0] * 4
    assert owned_points(points, boxes, strong_pts, added.bboxes_3d) == [[2], [3], [4], [5]]
    for k, box in zip([2, 3, 4, 5], added.bboxes_3d.numpy()):
        assert points_in_boxes(strong_pts.numpy(), box[None]).sum() == 60
    kept = set(out['points'][0][:, 3].long().tolist())
    assert set(range(120, 180)) <= kept  # object 2's points stay
    with pytest.raises(ValueError, match='needs pseudo_match_iou'):
        build(pseudo_from='teacher_plus_missed')
    with pytest.raises(ValueError, match='needs pseudo_match_iou'):
        build(pseudo_from='teacher_minus_false', pseudo_match_iou=[0.5, 0.25])
    with pytest.raises(ValueError, match='not into its heatmap'):
        build(pseudo_from='teacher_minus_false', pseudo_match_iou=[0.5, 0.25, 0.25],
              dense_weight=1.0)


def test_teacher_minus_false_drops_the_boxes_that_find_no_object_of_their_class():
    """``pseudo_from='teacher_minus_false'`` (a diagnostic): the wrong-class, misplaced and
    empty-ground boxes go, in every tier; the right ones keep their tiers and weights, and
    the right low box still removes exactly its object's points."""
    points, boxes, labels, (weak_pts, weak), (strong_pts, strong) = labeled_weak_view()
    model = build(middle='weight', low='remove_points', low_score_thr=0.1,
                  pseudo_from='teacher_minus_false', pseudo_match_iou=[0.5, 0.25, 0.25])
    mixed_teacher(model, weak, boxes, dropped=True)
    out, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    assert stats['pseudo/num_mixed'] == 4  # the empty-ground box below every tier: uncounted
    assert stats['pseudo/num_high'] == 1 and stats['pseudo/num_middle'] == 1
    assert stats['pseudo/num_low'] == 1
    model.low = 'off'  # the low boxes, the empty-ground one among them, then teach nothing
    assert model.pseudo_instances(dict(points=[weak_pts]), [weak], dict(points=[strong_pts]),
                                  [copy.deepcopy(strong)])[2]['pseudo/num_mixed'] == 3
    gt = samples[0].gt_instances_3d
    assert gt.labels_3d.tolist() == [0, 1] and gt.weights.tolist() == pytest.approx([1, 0.5])
    assert owned_points(points, boxes, strong_pts, gt.bboxes_3d) == [[0], [1]]
    removed = set(strong_pts[:, 3].long().tolist()) - set(out['points'][0][:, 3].long().tolist())
    assert removed == set(range(120, 180))


def test_tiers_and_exactly_the_low_boxes_points_removed():
    points, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=True)
    model = build(middle='weight', low='remove_points', low_score_thr=0.1)
    scores = [0.9, 0.5, 0.2, 0.05, 0.9, 0.25]  # high, middle, low, dropped, high (cut), low
    fake_teacher(model, weak, boxes, scores)
    out_inputs, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    gt = samples[0].gt_instances_3d
    assert stats['pseudo/num_high'] == 1 and stats['pseudo/num_middle'] == 1
    assert stats['pseudo/num_low'] == 2 and stats['pseudo/num_cut'] == 1
    assert sorted(gt.weights.tolist()) == pytest.approx([0.5, 1.0])
    # removed = the points of objects 2 and 5 (by index), nothing else
    kept = set(out_inputs['points'][0][:, 3].long().tolist())
    removed = set(strong_pts[:, 3].long().tolist()) - kept
    in_low = points_in_boxes(points, boxes[[2, 5]]).any(axis=1)
    assert removed == set(np.flatnonzero(in_low).tolist())
    assert stats['pseudo/num_removed_points'] == len(removed) == 120


@pytest.mark.parametrize('power, expected', [(1.0, [0.6, 1.0]), (2.0, [0.36, 1.0])])
def test_middle_boxes_weigh_their_score_to_middle_power(power, expected):
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    model = build(middle='weight', middle_power=power, low='off')
    fake_teacher(model, weak, boxes, [0.9, 0.6, 0.2, 0.05, 0.3, 0.25])
    _, samples, _ = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    assert sorted(samples[0].gt_instances_3d.weights.tolist()) == pytest.approx(expected)
    with pytest.raises(ValueError, match='middle_power'):
        build(middle_power=0.0)


def test_count_cap_compares_the_teachers_boxes_per_scene_with_the_labeled_scenes():
    """The call site hands the policy the number of weak scenes: a teacher that finds 4 cars
    in one scene, where the labeled scenes hold 1 a scene, gets its car threshold raised."""
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    model = build(middle='weight', low='off', pseudo_label=dict(
        type='DynamicThreshold', num_classes=3, init_high=0.5, init_low=0.3, min_count=1,
        count_cap=1.0))
    model.pseudo_label.update_labeled(torch.tensor([0, 1, 2, 0, 1, 2]), num_images=2)
    from ssl_det.structures import transform_boxes3d
    pred = InstanceData(
        bboxes_3d=torch.as_tensor(transform_boxes3d(boxes, weak.lidar_aug_matrix)),
        scores_3d=torch.full((6,), 0.9), labels_3d=torch.tensor([0, 0, 0, 0, 1, 2]))
    model.teacher_predict = lambda inputs, samples: [copy.deepcopy(pred)]
    _, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    high = model.pseudo_label.high_thr
    assert high[0] > 0.9 and high[1:].tolist() == pytest.approx([0.5, 0.5])
    assert stats['pseudo/num_high'] == 2  # the cars go to the middle tier
    assert sorted(samples[0].gt_instances_3d.labels_3d[
        samples[0].gt_instances_3d.weights == 1].tolist()) == [1, 2]


def test_middle_ignore_and_low_ignore_modes():
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    model = build(middle='ignore', low='ignore')
    fake_teacher(model, weak, boxes, [0.9, 0.5, 0.2, 0.05, 0.9, 0.25])
    out_inputs, samples, _ = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    assert len(samples[0].gt_instances_3d) == 2
    assert len(samples[0].ignored_instances_3d) == 3  # one middle, two low
    assert len(out_inputs['points'][0]) == len(strong_pts)  # nothing removed


def test_middle_mode_per_class():
    """HSSDA's code keeps pedestrians' middle tier off: one mode a class, here weight for
    class 0, off for class 1 and ignore for class 2 (labels 0 1 2 0 1 2)."""
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    model = build(middle=['weight', 'off', 'ignore'], low='off')
    fake_teacher(model, weak, boxes, [0.5, 0.55, 0.6, 0.9, 0.9, 0.9])
    _, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    gt, ignored = samples[0].gt_instances_3d, samples[0].ignored_instances_3d
    pairs = sorted(zip(gt.labels_3d.tolist(), gt.weights.tolist()))
    assert [p[0] for p in pairs] == [0, 0, 1, 2]
    assert [p[1] for p in pairs] == pytest.approx([0.5, 1.0, 1.0, 1.0])
    assert ignored.labels_3d.tolist() == [2]
    assert stats['pseudo/num_middle'] == 2
    with pytest.raises(ValueError, match='middle'):
        build(middle=['weight', 'sometimes', 'off'])
    with pytest.raises(ValueError, match='3 classes'):
        build(middle=['weight', 'off'], pseudo_label=dict(
            type='DynamicThreshold', num_classes=3, init_high=0.7, init_low=0.4))


def test_low_off_keeps_every_point_and_reports_no_low_tier():
    # the 3D demo's default since its low tier cost AP: low boxes are neither used, counted
    # nor drawn (the picture and the log show what the student learns from)
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    model = build(middle='weight', low='off', low_score_thr=0.1)
    fake_teacher(model, weak, boxes, [0.9, 0.5, 0.2, 0.05, 0.9, 0.25])
    out_inputs, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    assert stats['pseudo/num_high'] == 2 and stats['pseudo/num_middle'] == 1
    assert stats['pseudo/num_low'] == 0 and stats['pseudo/num_removed_points'] == 0
    assert len(out_inputs['points'][0]) == len(strong_pts)
    assert len(samples[0].pseudo_tiers['low']) == 0
    assert len(samples[0].ignored_instances_3d) == 0


def test_dynamic_thresholds_are_saved_and_restored():
    model = build(pseudo_label=dict(type='DynamicThreshold', num_classes=3, init_high=0.5,
                                    init_low=0.3, min_count=5, momentum=0.5))
    scores = torch.cat([torch.full((40,), 0.8), torch.full((40,), 0.2)])
    labels = torch.zeros(80, dtype=torch.long)
    for _ in range(3):
        model.pseudo_label.update(scores, labels)
    state = model.state_dict()
    assert any(k.startswith('pseudo_label.') for k in state)
    fresh = build(pseudo_label=dict(type='DynamicThreshold', num_classes=3, init_high=0.5,
                                    init_low=0.3, min_count=5, momentum=0.5))
    assert not torch.equal(fresh.pseudo_label.high_thr, model.pseudo_label.high_thr)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.pseudo_label.high_thr, model.pseudo_label.high_thr)
    assert torch.equal(fresh.pseudo_label.low_thr, model.pseudo_label.low_thr)


def test_a_low_box_on_a_high_box_removes_nothing():
    # a weak duplicate of a confident detection is not an unseen object: keep its points
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    dup = boxes[0].copy()
    dup[:2] += 0.3
    model = build(middle='off', low='remove_points')
    fake_teacher(model, weak, np.vstack([boxes[:1], dup[None]]), [0.9, 0.2])
    out_inputs, _, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    assert stats['pseudo/num_low'] == 0
    assert len(out_inputs['points'][0]) == len(strong_pts)


def test_pseudo_label_picture_draws_the_tiers():
    from ssl_det.engine.hooks.pseudo_label_vis_hook import PseudoLabelVisHook
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=True)
    model = build(middle='weight', low='remove_points')
    fake_teacher(model, weak, boxes, [0.9, 0.5, 0.2, 0.05, 0.9, 0.25])
    out_inputs, samples, _ = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    tiers = samples[0].pseudo_tiers
    assert (len(tiers['high']), len(tiers['middle']), len(tiers['low'])) == (1, 1, 2)
    image = PseudoLabelVisHook.draw_3d(out_inputs['points'][0], samples[0],
                                       ('Car', 'Pedestrian', 'Cyclist'), PCR)
    empty = samples[0].clone()
    empty.set_metainfo(dict(pseudo_tiers=dict()))
    empty.ignored_instances_3d = InstanceData(bboxes_3d=torch.zeros(0, 7))
    blank = PseudoLabelVisHook.draw_3d(out_inputs['points'][0], empty, None, PCR)
    assert image.ndim == 3 and image.dtype == np.uint8 and image.shape == blank.shape
    assert (image != blank).any(axis=2).sum() > 500  # the boxes are drawn


def test_policy_and_detector_must_agree_on_classes():
    with pytest.raises(ValueError, match='thresholds for 5 classes.*predicts 3'):
        build(pseudo_label=dict(type='DynamicThreshold', num_classes=5))


def test_matched_thresholds_learn_only_from_teacher_boxes_on_labeled_objects():
    """HSSDA's source: teacher boxes on labeled scenes that match a ground-truth box of their
    class (BEV IoU >= 0.5) move the thresholds; unmatched boxes and unlabeled views do not."""
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    from ssl_det.structures import transform_boxes3d
    model = build(pseudo_label=dict(type='MatchedScoreThreshold', num_classes=3, init_high=0.5,
                                    init_low=0.3, min_count=2, momentum=0.5))
    labeled = copy.deepcopy(weak)
    gt_boxes = torch.as_tensor(transform_boxes3d(boxes, weak.lidar_aug_matrix))
    labeled.gt_instances_3d = InstanceData(bboxes_3d=gt_boxes,
                                           labels_3d=torch.arange(len(boxes)) % 3)
    shifted = boxes[:2].copy()
    shifted[:, :2] += 20.0  # far from every object
    wrong_class = boxes[3:4]
    predicted = np.vstack([boxes, shifted, wrong_class])
    scores = [0.9, 0.8, 0.85, 0.4, 0.45, 0.35, 0.6, 0.6, 0.7]
    fake_teacher(model, labeled, predicted, scores)
    # the last prediction sits on object 3 (class 0) but says class 2: not a match
    pred = model.teacher_predict(None, None)[0]
    pred.labels_3d = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    model.teacher_predict = lambda inputs, samples: [copy.deepcopy(pred)]
    model.update_from_labeled(dict(points=[weak_pts]), [labeled])
    hist = model.pseudo_label.score_hist
    assert hist.sum().item() == 6  # the six labeled objects, nothing else
    bins = (torch.tensor(scores[:6]).double() * model.pseudo_label.num_bins).long()
    for label, b in zip(pred.labels_3d[:6].tolist(), bins.tolist()):
        assert hist[label, b] >= 1
    # the 2-means centres of class 0's {0.9, 0.4}, to the histogram's bin
    assert model.pseudo_label.high_thr[0].item() == pytest.approx(0.9, abs=0.011)
    assert model.pseudo_label.low_thr[0].item() == pytest.approx(0.4, abs=0.011)
    # the unlabeled views' predictions split by these thresholds without moving them
    before = hist.clone()
    fake_teacher(model, weak, boxes, [0.9, 0.5, 0.2, 0.05, 0.9, 0.25])
    model.pseudo_instances(dict(points=[weak_pts]), [weak], dict(points=[strong_pts]),
                           [strong])
    assert torch.equal(model.pseudo_label.score_hist, before)
    # a policy that adapts to the teacher's unlabeled scores does move
    dynamic = build(pseudo_label=dict(type='DynamicThreshold', num_classes=3, min_count=3))
    fake_teacher(dynamic, weak, boxes, [0.9, 0.5, 0.2, 0.05, 0.9, 0.25])
    dynamic.pseudo_instances(dict(points=[weak_pts]), [weak], dict(points=[strong_pts]),
                             [strong])
    assert dynamic.pseudo_label.score_hist.sum().item() == 6


def test_matched_thresholds_need_the_3d_model():
    from ssl_det.models.detectors.teacher_student import TeacherStudent
    with pytest.raises(ValueError, match='only TeacherStudent3D'):
        TeacherStudent(detector=detector_cfg(),
                       pseudo_label=dict(type='MatchedScoreThreshold', num_classes=3))


def occupancy(points, shape=(64, 64)):
    """(1, rows, cols) BEV occupancy of points over PCR at 0.4 m."""
    pts = torch.as_tensor(np.asarray(points)[:, :2], dtype=torch.float64)
    col = ((pts[:, 0] - PCR[0]) / 0.4).floor().long()
    row = ((pts[:, 1] - PCR[1]) / 0.4).floor().long()
    ok = (col >= 0) & (col < shape[1]) & (row >= 0) & (row < shape[0])
    grid = torch.zeros(1, *shape)
    grid[0, row[ok], col[ok]] = 1.0
    return grid


def test_feature_unshuffle_moves_every_patch_back():
    """A shuffled scene's BEV map, un-shuffled, is the unshuffled scene's map, at the canvas
    and at a coarser stride; a cyclic permutation (not its own inverse) fixes the direction."""
    points, _ = scene()
    info = make_shuffle(PCR, (2, 2), [1, 2, 3, 0], mode='unshuffle_features')
    bev = [PCR[0], PCR[1], PCR[3], PCR[4]]
    shuffled = occupancy(shuffle_points(points, info))
    assert not torch.equal(shuffled, occupancy(points))
    assert torch.equal(unshuffle_bev_map(shuffled, info, bev), occupancy(points))
    pool = torch.nn.functional.max_pool2d
    assert torch.equal(unshuffle_bev_map(pool(shuffled, 4), info, bev),
                       pool(occupancy(points), 4))
    with pytest.raises(ValueError, match='do not fall on whole cells'):
        unshuffle_bev_map(shuffled, make_shuffle(PCR, (3, 1), [1, 2, 0]), bev)


class _ListIdentity(torch.nn.Module):
    def forward(self, x):
        return [x]


class _First(torch.nn.Module):
    def forward(self, feats):
        return feats[0]


class _OnesEncoder(torch.nn.Module):
    """The pillars of an encoder, each with features of ones (a learned feature can be all
    zero after its ReLU, which would hide an occupied pillar)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, points, coors):
        feats, pillar_coors = self.encoder(points, coors)
        return torch.ones_like(feats), pillar_coors


def test_detector_unshuffles_its_backbone_features():
    points, boxes = scene()
    detector = MODELS.build(detector_cfg())
    detector.backbone, detector.neck = _ListIdentity(), _First()  # features = the canvas
    detector.voxel_encoder = _OnesEncoder(detector.voxel_encoder)
    np.random.seed(3)
    results = BEVPatchShuffle(point_cloud_range=PCR, grid=(2, 2), mode='unshuffle_features')(
        dict(points=points.copy(), gt_bboxes_3d=boxes.copy(),
             gt_labels_3d=np.zeros(len(boxes), int)))
    info = results['bev_shuffle']
    assert info['perm'] != [0, 1, 2, 3]
    np.testing.assert_array_equal(results['gt_bboxes_3d'], boxes)  # boxes stay
    assert 'gt_ignore_flags' not in results
    sample = PackPointCloudInputs(meta_keys=META)(dict(results))['data_samples']
    shuffled = torch.as_tensor(results['points'])
    with torch.no_grad():
        feats = detector.extract_feat(dict(points=[shuffled]), [sample])
        plain = detector.extract_feat(dict(points=[shuffled]))
    occupied = (feats[0].abs().sum(0, keepdim=True) > 0).float()
    assert torch.equal(occupied, occupancy(points))
    assert not torch.equal((plain[0].abs().sum(0, keepdim=True) > 0).float(), occupancy(points))
    # _forward (PreciseBNHook's pass over strong views) moves the features back too
    detector.bbox_head = _ListIdentity()
    with torch.no_grad():
        torch.testing.assert_close(detector._forward(dict(points=[shuffled]), [sample])[0],
                                   feats)


def feature_unshuffle_tiers(scores, **modes):
    """The tiers of a strong view shuffled with ``mode='unshuffle_features'``."""
    points, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(
        shuffle=True, mode='unshuffle_features')
    model = build(**modes)
    fake_teacher(model, weak, boxes, scores)
    out_inputs, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    return points, boxes, strong_pts, strong, out_inputs, samples, stats


def test_pseudo_boxes_stay_unshuffled_when_the_features_move_back():
    points, boxes, strong_pts, strong, out_inputs, samples, stats = feature_unshuffle_tiers(
        [0.9, 0.9, 0.2, 0.9, 0.9, 0.9], middle='off', low='remove_points')
    gt = samples[0].gt_instances_3d
    assert len(gt) == stats['pseudo/num_high'] == 5 and stats['pseudo/num_cut'] == 0
    assert len(samples[0].ignored_instances_3d) == 0  # nothing cut, nothing ignored
    # in the unshuffled frame every pseudo box holds exactly its object's 60 points
    back = unshuffle_points(strong_pts, strong.bev_shuffle).numpy()
    assert not np.allclose(back[:, :2], strong_pts.numpy()[:, :2])
    for box in gt.bboxes_3d.numpy():
        assert points_in_boxes(back, box[None])[:, 0].sum() == 60
    # the low box's points (object 2) are removed, found in the unshuffled frame
    kept = set(out_inputs['points'][0][:, 3].long().tolist())
    removed = set(strong_pts[:, 3].long().tolist()) - kept
    assert removed == set(np.flatnonzero(points_in_boxes(points, boxes[[2]])[:, 0]).tolist())


def test_picture_of_feature_unshuffle_draws_the_points_in_place():
    """With the features moved back, the boxes are in the unshuffled frame: the picture puts
    the points there too, so the boxes sit on their objects."""
    from ssl_det.engine.hooks.pseudo_label_vis_hook import PseudoLabelVisHook
    _, _, _, strong, out_inputs, samples, _ = feature_unshuffle_tiers(
        [0.9, 0.5, 0.2, 0.05, 0.9, 0.25], middle='weight', low='off')
    picture = PseudoLabelVisHook.draw_3d(out_inputs['points'][0], samples[0], None, PCR)
    in_place = samples[0].clone()
    in_place.set_metainfo(dict(bev_shuffle=None))
    back = unshuffle_points(out_inputs['points'][0], strong.bev_shuffle)
    assert np.array_equal(picture, PseudoLabelVisHook.draw_3d(back, in_place, None, PCR))
    assert not np.array_equal(
        picture, PseudoLabelVisHook.draw_3d(out_inputs['points'][0], in_place, None, PCR))


def test_a_low_box_on_a_middle_box_removes_nothing():
    # a weak duplicate of a middle-tier box is not an unseen object either: keep its points
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    dup = boxes[0].copy()
    dup[:2] += 0.3
    model = build(middle='weight', low='remove_points')
    fake_teacher(model, weak, np.vstack([boxes[:1], dup[None]]), [0.5, 0.2])
    out_inputs, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    assert stats['pseudo/num_middle'] == 1 and stats['pseudo/num_low'] == 0
    assert len(out_inputs['points'][0]) == len(strong_pts)


def test_patch_shuffle_transform_ignores_the_ground_truth_box_a_border_cuts():
    # the transform itself (labeled scenes): whole boxes move with their patch and stay
    # supervised; the box across the x = 12.8 border is flagged ignored, unmoved
    points, boxes = scene()
    np.random.seed(9)
    results = BEVPatchShuffle(point_cloud_range=PCR, grid=(2, 2))(dict(
        points=points.copy(), gt_bboxes_3d=boxes.copy(), gt_labels_3d=np.zeros(6, int),
        gt_ignore_flags=np.zeros(6, bool)))
    flags = results['gt_ignore_flags']
    assert flags.tolist() == [False, False, False, False, True, False]
    np.testing.assert_array_equal(results['gt_bboxes_3d'][4], boxes[4])
    moved = shuffle_points(points, results['bev_shuffle'])
    for i in (0, 1, 2, 3, 5):  # each whole box still holds exactly its own 60 points
        assert not np.allclose(results['gt_bboxes_3d'][i, :2], boxes[i, :2])
        inside = points_in_boxes(moved, results['gt_bboxes_3d'][i:i + 1])[:, 0]
        assert set(moved[inside, 3].astype(int)) == set(range(60 * i, 60 * i + 60))
    packed = PackPointCloudInputs(meta_keys=META)(dict(results, lidar_aug_matrix=np.eye(4),
                                                       frame_id='f0'))['data_samples']
    assert len(packed.gt_instances_3d) == 5 and len(packed.ignored_instances_3d) == 1


# ----------------------------------------------------------------------- teacher views
def object_detector(model, weak_sample, scores, missing_in_views=(), log=None):
    """The teacher's detector 'sees' each object of :func:`scene` in whatever frame its
    input is in: the box around the object's points (heading along the line from the mean
    of its first 30 points to the mean of its last 30; centre and size from the points'
    extent along and across that heading and in z), so a box is right only if the points
    reached it in that view's frame. Objects in ``missing_in_views`` are not seen in the
    extra views (a view is extra when its ``lidar_aug_matrix`` is not the weak view's)."""
    def predict(inputs, samples):
        out = []
        for pts, sample in zip(inputs['points'], samples):
            extra = not np.allclose(sample.lidar_aug_matrix, weak_sample.lidar_aug_matrix)
            if log is not None:
                log.append((pts.clone(), np.asarray(sample.lidar_aug_matrix)))
            idx = pts[:, 3].long()
            boxes, labels, kept = [], [], []
            for k in range(len(scores)):
                if extra and k in missing_in_views:
                    continue
                obj = pts[(idx >= 60 * k) & (idx < 60 * k + 60)][:, :3].double()
                if len(obj) < 60:  # the view lost part of the object
                    continue
                mean = obj.mean(dim=0)
                d = obj[30:].mean(dim=0) - obj[:30].mean(dim=0)
                yaw = torch.atan2(d[1], d[0])
                c, s = torch.cos(yaw), torch.sin(yaw)
                rel = obj - mean
                along, across = rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c
                size = torch.stack([along.max() - along.min(), across.max() - across.min(),
                                    rel[:, 2].max() - rel[:, 2].min()])
                mid_a, mid_c = (along.max() + along.min()) / 2, (across.max() + across.min()) / 2
                centre = mean + torch.stack([mid_a * c - mid_c * s, mid_a * s + mid_c * c,
                                               (rel[:, 2].max() + rel[:, 2].min()) / 2])
                boxes.append(torch.cat([centre, size, yaw[None]]))
                labels.append(k % 3)
                kept.append(scores[k])
            sample = type(sample)(metainfo=sample.metainfo)
            sample.pred_instances_3d = InstanceData(
                bboxes_3d=torch.stack(boxes).float(), scores_3d=torch.tensor(kept),
                labels_3d=torch.tensor(labels))
            out.append(sample)
        return out
    model.teacher.predict = predict


VIEWS = [[dict(rot=0.4, scale=1.1)], [dict(flip_y=True, rot=-0.3)],
         [dict(flip_y=True), dict(rot=0.25, scale=0.95)]]


@pytest.mark.parametrize('views', VIEWS)
def test_teacher_views_return_to_the_weak_views_frame(views):
    """Each extra view's points are the weak points moved by the view's map, and its boxes
    come back through the inverse: they fuse with the weak view's boxes of the same objects
    into one box each, seen by every view, at the weak view's box and score."""
    _, _, (weak_pts, weak), _ = weak_and_strong(shuffle=False)
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    plain = build(middle='off', low='off')
    object_detector(plain, weak, scores)
    expected = plain.teacher_predict(dict(points=[weak_pts]), [weak])[0]
    model = build(middle='off', low='off', teacher_views=views)
    log = []
    object_detector(model, weak, scores, log=log)
    fused = model.teacher_predict(dict(points=[weak_pts]), [weak])[0]
    from ssl_det.models.utils.teacher_views import view_matrix
    from ssl_det.structures import transform_points
    assert len(log) == 1 + len(views)
    for (pts, aug), view in zip(log[1:], views):
        mat = view_matrix(**view)
        torch.testing.assert_close(pts, transform_points(weak_pts, mat))
        np.testing.assert_allclose(aug, mat @ np.asarray(weak.lidar_aug_matrix), atol=1e-9)
    assert len(fused) == len(expected) == 6
    assert fused.num_views.tolist() == [1 + len(views)] * 6
    torch.testing.assert_close(fused.bboxes_3d, expected.bboxes_3d, atol=2e-4, rtol=0)
    torch.testing.assert_close(fused.scores_3d, expected.scores_3d)
    assert fused.labels_3d.tolist() == expected.labels_3d.tolist()


def test_a_box_one_view_misses_keeps_its_share_of_the_score():
    _, _, (weak_pts, weak), _ = weak_and_strong(shuffle=False)
    model = build(middle='off', low='off', teacher_views=[dict(flip_y=True)])
    object_detector(model, weak, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], missing_in_views=(1,))
    fused = model.teacher_predict(dict(points=[weak_pts]), [weak])[0]
    # object 1 (score 0.8) is seen by the weak view only: (0.8 + 0) / 2; the rest by both
    assert fused.scores_3d.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5, 0.4, 0.4])
    assert fused.num_views.tolist() in ([2, 2, 2, 2, 2, 1], [2, 2, 2, 2, 1, 2])
    lone = fused.num_views == 1
    assert fused.labels_3d[lone].tolist() == [1]


def test_view_iou_thr_decides_which_boxes_of_the_views_fuse():
    """The model's ``view_iou_thr`` reaches the BEV fusion: an extra view that finds every
    object 0.3 m off along x fuses each with the weak view's box at a threshold below their
    BEV IoU, and keeps the two apart, each at half its score, at one above it."""
    from ssl_det.ops import rotated_iou_bev
    _, _, (weak_pts, weak), _ = weak_and_strong(shuffle=False)
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    plain = build(middle='off', low='off')
    object_detector(plain, weak, scores)
    exact = plain.teacher_predict(dict(points=[weak_pts]), [weak])[0].bboxes_3d.double()
    off = exact.clone()
    off[:, 0] += 0.3
    iou = rotated_iou_bev(exact, off).diagonal()
    assert 0.1 < iou.min() and iou.max() < 0.94
    for thr, views in ((float(iou.min()) - 0.05, [2] * 6), (float(iou.max()) + 0.05, [1] * 12)):
        model = build(middle='off', low='off', teacher_views=[dict(flip_y=True)],
                      view_iou_thr=thr)
        object_detector(model, weak, scores)

        def off_in_the_extra_view(inputs, samples, seen=model.teacher.predict):
            results = seen(inputs, samples)
            for sample in results:
                if not np.allclose(sample.lidar_aug_matrix, weak.lidar_aug_matrix):
                    sample.pred_instances_3d.bboxes_3d[:, 0] += 0.3
            return results

        model.teacher.predict = off_in_the_extra_view
        fused = model.teacher_predict(dict(points=[weak_pts]), [weak])[0]
        assert sorted(fused.num_views.tolist()) == views, thr
        if views == [1] * 12:
            assert sorted(fused.scores_3d.tolist()) == pytest.approx(
                sorted([s / 2 for s in scores] * 2))


def test_fuse_views_merges_within_a_class_and_weighs_by_score():
    from ssl_det.models.utils.teacher_views import fuse_views
    a = torch.tensor([[10.0, 0.0, -1.0, 4.0, 2.0, 1.5, 0.1]])
    b = torch.tensor([[10.4, 0.0, -1.0, 4.4, 2.0, 1.5, 0.3],   # the same object, class 0
                      [10.0, 0.0, -1.0, 4.0, 2.0, 1.5, 0.1],   # same place, class 1
                      [10.2, 0.0, -1.0, 4.0, 2.0, 1.5, 0.1]])  # a duplicate in view 1
    boxes, scores, labels, seen = fuse_views(
        [a, b], [torch.tensor([0.6]), torch.tensor([0.2, 0.5, 0.1])],
        [torch.tensor([0]), torch.tensor([0, 1, 0])], iou_thr=0.5)
    assert labels.tolist() == [0, 1] and seen.tolist() == [2, 1]
    assert scores.tolist() == pytest.approx([0.4, 0.25])  # (0.6 + 0.2) / 2; 0.5 / 2
    # centre and size: 0.75 * a + 0.25 * b[0] (the duplicate does not count); yaw: a's
    assert boxes[0, 0].item() == pytest.approx(10.1) and boxes[0, 3].item() == pytest.approx(4.1)
    assert boxes[0, 6].item() == pytest.approx(0.1)
    empty = fuse_views([torch.zeros(0, 7)] * 2, [torch.zeros(0)] * 2,
                       [torch.zeros(0, dtype=torch.long)] * 2)
    assert [len(t) for t in empty] == [0, 0, 0, 0]


def test_teacher_views_are_checked():
    with pytest.raises(ValueError, match='unknown teacher view keys'):
        build(teacher_views=[dict(flip=True)])
    with pytest.raises(ValueError, match='weak view itself'):
        build(teacher_views=[dict(rot=0.0)])
    with pytest.raises(ValueError, match='scale'):
        build(teacher_views=[dict(scale=0.0)])
    with pytest.raises(ValueError, match='view_iou_thr'):
        build(teacher_views=['flip_y'], view_iou_thr=0.0)


@pytest.mark.parametrize('shuffle', [False, True])
def test_pseudo_boxes_from_teacher_views_land_on_the_strong_views_objects(shuffle):
    """The call site: fused boxes go weak -> strong and hold exactly their objects' points."""
    points, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=shuffle)
    model = build(middle='off', low='off',
                  teacher_views=[dict(flip_y=True), dict(rot=0.3, scale=1.05)])
    object_detector(model, weak, [0.9] * 6)
    _, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    gt = samples[0].gt_instances_3d
    assert len(gt) == (5 if shuffle else 6) == stats['pseudo/num_high']
    index = strong_pts[:, 3].long().numpy()
    for box in gt.bboxes_3d.numpy():
        inside = points_in_boxes(strong_pts.numpy(), box[None], margin=0.01)[:, 0]
        obj = int(np.bincount(index[inside] // 60).argmax())
        assert inside.sum() == 60 and set(index[inside] // 60) == {obj}


def joint_batch_case(seed=9):
    """Two labeled scenes (their ground truth packed) and a weak / strong pair whose teacher
    'predicts' the objects with high and middle scores, for two models with one weight set."""
    points, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(seed=seed)
    # parts of unequal size (2 + 1), so a reversed split cannot pass
    labeled = [PackPointCloudInputs(meta_keys=META)(dict(
        points=pts.copy(), gt_bboxes_3d=boxes.copy(), gt_labels_3d=np.arange(len(boxes)) % 3,
        lidar_aug_matrix=np.eye(4), frame_id=f'l{i}'))
        for i, pts in enumerate((points[::-1], points[::2]))]
    inputs = dict(sup=dict(points=[p['inputs']['points'] for p in labeled]),
                  unsup_teacher=dict(points=[weak_pts]),
                  unsup_student=dict(points=[strong_pts]))
    samples = dict(sup=[p['data_samples'] for p in labeled], unsup_teacher=[weak],
                   unsup_student=[strong])
    torch.manual_seed(0)
    separate = build(middle='weight', low='off', unsup_weight=2.0)
    joint = build(middle='weight', low='off', unsup_weight=2.0, joint_batch=True)
    joint.load_state_dict(separate.state_dict())
    for model in (separate, joint):
        fake_teacher(model, weak, boxes, [0.9, 0.55, 0.9, 0.5, 0.9, 0.6])
    return inputs, samples, separate, joint


def test_joint_batch_gives_each_batch_its_own_loss_and_gradient():
    """With BatchNorm frozen (eval statistics), one student pass over the labeled and strong
    scenes gives the same weighted losses and gradients as one pass each."""
    inputs, samples, separate, joint = joint_batch_case()
    results = []
    for model in (separate, joint):
        model.student.eval()  # BatchNorm from running statistics: batches independent
        losses = model.loss(copy.deepcopy(inputs), copy.deepcopy(samples))
        model.zero_grad()
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        grads = {n: p.grad.clone() for n, p in model.student.named_parameters()
                 if p.grad is not None}
        results.append((losses, grads))
    (sep_losses, sep_grads), (joint_losses, joint_grads) = results
    assert set(sep_losses) == set(joint_losses)
    assert sep_losses['pseudo_num_high'] >= 2 and sep_losses['pseudo_num_middle'] >= 2
    for key in sep_losses:
        torch.testing.assert_close(joint_losses[key], sep_losses[key], rtol=1e-5, atol=1e-6)
    # the two batches' losses differ, so a swap of the parts could not pass
    assert not torch.allclose(sep_losses['sup_loss_heatmap'], sep_losses['unsup_loss_heatmap'])
    assert set(sep_grads) == set(joint_grads) and sep_grads
    for name in sep_grads:
        torch.testing.assert_close(joint_grads[name], sep_grads[name], rtol=1e-4, atol=1e-6)


def test_joint_batch_normalises_labeled_and_strong_scenes_together():
    """In training mode each BatchNorm layer sees one batch of both scenes (HSSDA's student
    batch), once a step, instead of two batches of one."""
    inputs, samples, separate, joint = joint_batch_case()
    calls = {}
    for name, model in (('separate', separate), ('joint', joint)):
        bn = next(m for m in model.student.backbone.modules()
                  if isinstance(m, torch.nn.BatchNorm2d))
        seen = calls.setdefault(name, [])
        bn.register_forward_hook(lambda m, args, out, seen=seen: seen.append(args[0].shape[0]))
        losses = model.loss(copy.deepcopy(inputs), copy.deepcopy(samples))
        assert torch.isfinite(sum(v for k, v in losses.items() if 'loss' in k))
    assert calls == dict(separate=[2, 1], joint=[3])


def test_joint_batch_needs_the_strong_scenes_in_the_statistics_and_loss_parts():
    with pytest.raises(ValueError, match='strong_bn_stats'):
        build(joint_batch=True, strong_bn_stats=False)
    cfg = detector_cfg()
    with pytest.raises(ValueError, match='loss_parts'):
        from ssl_det.models.point_cloud.pillar_detector import PillarDetector

        class NoParts(PillarDetector):
            loss_parts = None
        MODELS.register_module(name='_NoPartsDetector', module=NoParts, force=True)
        build(joint_batch=True, detector=dict(cfg, type='_NoPartsDetector'))


def test_labeled_bn_stats_false_leaves_the_running_statistics_to_the_strong_scenes():
    """Three students of one weight set after one step: both batches update the running
    statistics (the default), the labeled one alone (strong_bn_stats=False), the strong one
    alone (labeled_bn_stats=False). From running mean 0 and momentum 0.1, labeled then
    strong, the default's mean is 0.9 x (labeled alone) + (strong alone)."""
    inputs, samples, both, _ = joint_batch_case()
    models = dict(both=both)
    for name, kwargs in (('labeled', dict(strong_bn_stats=False)),
                         ('strong', dict(labeled_bn_stats=False))):
        models[name] = build(middle='weight', low='off', unsup_weight=2.0, **kwargs)
        models[name].load_state_dict(both.state_dict())
        fake_teacher(models[name], samples['unsup_teacher'][0], weak_and_strong(seed=9)[1],
                     [0.9, 0.55, 0.9, 0.5, 0.9, 0.6])
    bns = {}
    for name, model in models.items():
        model.train()
        losses = model.loss(copy.deepcopy(inputs), copy.deepcopy(samples))
        assert losses['pseudo_num_high'] >= 2
        bns[name] = [m for m in model.student.modules()
                     if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(bns['both']) >= 3  # the pillar net's BatchNorm1d and the backbone's 2d ones
    for both_bn, lab_bn, strong_bn in zip(bns['both'], bns['labeled'], bns['strong']):
        assert (int(both_bn.num_batches_tracked), int(lab_bn.num_batches_tracked),
                int(strong_bn.num_batches_tracked)) == (2, 1, 1)
        assert strong_bn.momentum == both_bn.momentum  # restored after the labeled batch
        assert not torch.allclose(strong_bn.running_mean, lab_bn.running_mean)
        torch.testing.assert_close(both_bn.running_mean,
                                   0.9 * lab_bn.running_mean + strong_bn.running_mean)


def test_labeled_bn_stats_false_without_a_strong_batch_still_updates():
    """An iteration without unlabeled scenes (or with the unlabeled loss off) must not
    leave the running statistics unchanged."""
    inputs, samples, _, _ = joint_batch_case()
    model = build(middle='weight', low='off', labeled_bn_stats=False)
    model.train()
    bn = model.student.backbone.modules()
    bn = next(m for m in bn if isinstance(m, torch.nn.BatchNorm2d))
    model.loss(dict(sup=inputs['sup']), dict(sup=samples['sup']))
    assert int(bn.num_batches_tracked) == 1 and bn.running_mean.abs().sum() > 0


def test_labeled_bn_stats_needs_some_batch_and_separate_passes():
    with pytest.raises(ValueError, match='no batch'):
        build(strong_bn_stats=False, labeled_bn_stats=False)
    with pytest.raises(ValueError, match='labeled_bn_stats=True'):
        build(joint_batch=True, labeled_bn_stats=False)


def test_loss_parts_refuses_clouds_that_do_not_match_their_samples():
    inputs, samples, separate, _ = joint_batch_case()
    parts = separate.student.loss_parts
    with pytest.raises(ValueError, match='one point cloud per sample'):
        parts([(inputs['sup'], samples['sup'][:1])])
    with pytest.raises(ValueError, match="keys \\['imgs', 'points'\\]"):
        parts([(dict(inputs['sup'], imgs=None), samples['sup'])])


def test_unsup_weight_scales_the_strong_scenes_losses_only():
    """``unsup_weight`` multiplies every loss on the pseudo-labeled strong scenes and leaves
    the labeled scenes' losses alone: 2.0 against 0.5 gives 4x the unlabeled losses."""
    inputs, samples, model, _ = joint_batch_case()
    model.student.eval()  # BatchNorm from running statistics: the same losses twice
    weighted = {}
    for weight in (2.0, 0.5):
        model.unsup_weight = weight
        weighted[weight] = model.loss(copy.deepcopy(inputs), copy.deepcopy(samples))
    heavy, light = weighted[2.0], weighted[0.5]
    unsup = [k for k in heavy if k.startswith('unsup_loss')]
    sup = [k for k in heavy if k.startswith('sup_loss')]
    assert 'unsup_loss_heatmap' in unsup and 'sup_loss_heatmap' in sup
    assert heavy['pseudo_num_high'] >= 2
    for key in unsup:
        assert float(light[key]) > 0, key
        torch.testing.assert_close(heavy[key], 4 * light[key], rtol=1e-5, atol=1e-7)
    for key in sup:
        torch.testing.assert_close(heavy[key], light[key])


def test_unsup_loss_keys_keep_the_strong_scenes_heatmap_only():
    """``unsup_loss_keys=['loss_heatmap']``: the pseudo boxes teach the heatmap, not the box
    code; the labeled scenes keep both losses."""
    inputs, samples, model, _ = joint_batch_case()
    full = model.loss(copy.deepcopy(inputs), copy.deepcopy(samples))
    heat_only = build(middle='weight', low='off', unsup_weight=2.0,
                      unsup_loss_keys=['loss_heatmap'])
    fake_teacher(heat_only, samples['unsup_teacher'][0], scene()[1],
                 [0.9, 0.55, 0.9, 0.5, 0.9, 0.6])
    part = heat_only.loss(copy.deepcopy(inputs), copy.deepcopy(samples))
    assert {'unsup_loss_heatmap', 'unsup_loss_bbox', 'sup_loss_bbox'} <= set(full)
    assert 'unsup_loss_bbox' not in part
    assert {'unsup_loss_heatmap', 'sup_loss_heatmap', 'sup_loss_bbox'} <= set(part)


def test_axis_only_pseudo_headings_lower_the_strong_scenes_box_loss_only():
    """``pseudo_heading='axis'`` in a training step, in separate passes and in the joint
    batch: the strong scenes' box loss drops (some random predictions are nearer a pseudo
    box's reverse), every other loss, the labeled scenes' box loss included, is unchanged."""
    inputs, samples, separate, _ = joint_batch_case()
    for joint in (False, True):
        losses = {}
        for mode in ('full', 'axis'):
            model = build(middle='weight', low='off', unsup_weight=2.0, joint_batch=joint,
                          pseudo_heading=mode)
            model.load_state_dict(separate.state_dict())
            fake_teacher(model, samples['unsup_teacher'][0], scene()[1],
                         [0.9, 0.55, 0.9, 0.5, 0.9, 0.6])
            model.student.eval()
            losses[mode] = model.loss(copy.deepcopy(inputs), copy.deepcopy(samples))
        full, axis = losses['full'], losses['axis']
        assert float(axis['unsup_loss_bbox']) < float(full['unsup_loss_bbox']) - 1e-4
        for key in full:
            if key != 'unsup_loss_bbox':
                torch.testing.assert_close(axis[key], full[key], msg=key)
