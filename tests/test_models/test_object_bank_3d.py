"""ObjectBank and TeacherStudent3D(object_bank=...): the teacher's surest objects are cut
from the weak view with their points, kept in their scene's raw frame, and pasted into the
labeled scenes through those scenes' own augmentation (rotations and scalings here, which
are not their own inverses), where they replace the points under them and join the ground
truth, flagged so that the labeled counts leave them out."""
import copy

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

import ssl_det.models  # noqa: F401
from ssl_det.datasets.transforms import GlobalRotScaleTrans
from ssl_det.models.utils.object_bank import ObjectBank
from ssl_det.structures import points_in_boxes, transform_boxes3d, transform_points

from test_models.test_teacher_student_3d import PCR, build, scene, view


def similarity(rot, scale, shift=(0.0, 0.0, 0.0)):
    c, s = np.cos(rot), np.sin(rot)
    mat = np.eye(4)
    mat[:3, :3] = scale * np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    mat[:3, 3] = shift
    return mat


def ground(seed=3, n=500):
    rng = np.random.default_rng(seed)
    xyz = np.c_[rng.uniform(0.5, 25, n), rng.uniform(-12, 12, n), np.full(n, -2.2)]
    return np.c_[xyz, np.full(n, -1.0)].astype(np.float32)  # index column -1: not an object


def banked(weak_mat, min_score=0.7, scores=(0.9,) * 6, num_paste=(1, 1, 1), **kwargs):
    """A bank fed the scene's objects as a teacher would see them in a weak view."""
    points, boxes = scene()
    bank = ObjectBank(3, num_paste, PCR, min_score=min_score, **kwargs)
    weak_pts = torch.as_tensor(transform_points(points, weak_mat))
    weak_boxes = torch.as_tensor(transform_boxes3d(boxes, weak_mat))
    added = bank.add(weak_pts, weak_boxes, torch.arange(6) % 3, torch.tensor(scores), weak_mat)
    return bank, points, boxes, added


def test_banked_objects_land_where_they_were_seen_through_the_labeled_view():
    """An object cut from a rotated, scaled weak view is pasted through the labeled scene's
    (different) map from the raw scene: box and points both, from the same object."""
    weak_mat = similarity(0.3, 1.07)
    bank, points, boxes, added = banked(weak_mat, num_paste=(0, 1, 0))
    assert added == 6 and bank.sizes() == [2, 2, 2]
    label_mat = similarity(-0.2, 0.95)
    # clutter (index -2) where either class-1 object (1 or 4) would land: the pasted one's is
    # replaced, the other's stays
    spots = transform_boxes3d(boxes[[1, 4]].astype(np.float64), label_mat)
    clutter = np.concatenate([np.c_[np.random.default_rng(k).uniform(-0.2, 0.2, (30, 3))
                                    + spots[k, :3], np.full(30, -2.0)] for k in range(2)])
    scene_np = np.concatenate([ground(), clutter.astype(np.float32)])
    out, pasted, labels = bank.paste(torch.as_tensor(scene_np), None, label_mat,
                                     rng=np.random.default_rng(0))
    assert labels.tolist() == [1] and len(pasted) == 1
    # which object: the points carry their index in column 3 (60 points an object)
    index = out[:, 3].numpy()
    obj_rows = index >= 0
    objs = set((index[obj_rows] // 60).astype(int))
    assert len(objs) == 1
    obj = objs.pop()
    assert obj in (1, 4)
    expected_box = transform_boxes3d(boxes[obj:obj + 1].astype(np.float64), label_mat)
    np.testing.assert_allclose(pasted.numpy(), expected_box, atol=1e-4)
    raw = points[(points[:, 3] >= 0) & (points[:, 3] // 60 == obj)]
    want = transform_points(raw, label_mat)
    got = out[obj_rows].numpy()
    got, want = got[np.argsort(got[:, 3])], want[np.argsort(want[:, 3])]
    np.testing.assert_allclose(got, want, atol=1e-4)
    # the clutter under the pasted box was replaced, the other spot's and the ground kept
    assert (index == -2).sum() == 30 and (index == -1).sum() == len(ground())
    kept = out[index == -2].numpy()
    assert not points_in_boxes(kept, expected_box).any()


def test_only_sure_objects_with_points_are_banked():
    weak_mat = similarity(0.1, 1.0)
    bank, *_ , added = banked(weak_mat, min_score=0.8,
                              scores=(0.9, 0.79, 0.95, 0.5, 0.81, 0.9))
    assert added == 4 and bank.sizes() == [1, 1, 2]  # objects 0, 2, 4, 5
    bank, *_, added = banked(weak_mat, min_points=61)  # 60 points an object
    assert added == 0 and len(bank) == 0


def test_capacity_keeps_the_newest():
    bank, *_ = banked(np.eye(4), capacity=1)
    assert bank.sizes() == [1, 1, 1]
    _, boxes = scene()
    np.testing.assert_allclose(bank.stores[0][0][0].numpy(), boxes[3], atol=1e-5)


def test_a_pasted_box_never_touches_a_box_of_the_scene_nor_leaves_the_range():
    bank, points, boxes, _ = banked(np.eye(4), num_paste=(2, 2, 2))
    scene_pts = torch.as_tensor(ground())
    # the scene already holds boxes where objects 0 and 1 were; 2 is under an ignored box
    out, pasted, labels = bank.paste(scene_pts, torch.as_tensor(boxes[:2]), np.eye(4),
                                     avoid=torch.as_tensor(boxes[2:3]),
                                     rng=np.random.default_rng(0))
    np.testing.assert_allclose(np.sort(pasted[:, 0].numpy()), np.sort(boxes[3:, 0]), atol=1e-5)
    assert sorted(labels.tolist()) == [0, 1, 2]
    # shifted by 20 m along x, every object but 0 and 2 leaves the range (x < 25.6)
    out, pasted, labels = bank.paste(scene_pts, None, similarity(0.0, 1.0, (20.0, 0, 0)),
                                     rng=np.random.default_rng(0))
    assert sorted((pasted[:, 0] - 20).round().tolist()) == [4.0, 5.0]


def test_bank_arguments_are_checked():
    with pytest.raises(ValueError, match='num_paste'):
        ObjectBank(3, (1, 1), PCR)
    with pytest.raises(ValueError, match='point_cloud_range'):
        ObjectBank(3, (1, 1, 1), PCR[:4])


def labeled_scene():
    pts, sample = view(ground(), np.zeros((0, 7), np.float32),
                       [GlobalRotScaleTrans(rot_range=(-0.2, -0.2), scale_range=(0.95, 0.95),
                                            translation_std=(0, 0, 0))])
    return pts, sample


def test_teacher_student_banks_the_high_tier_and_pastes_into_the_labeled_scenes():
    """At the call sites: the teacher's high boxes on a rotated weak view enter the bank
    (not the middle ones), and the next labeled batch gets them at the place the labeled
    view's map puts them, as ground truth the threshold policy's labeled counts skip."""
    points, boxes = scene()
    np.random.seed(4)
    rot = [GlobalRotScaleTrans(rot_range=(0.3, 0.3), scale_range=(1.07, 1.07),
                               translation_std=(0, 0, 0))]
    weak_pts, weak = view(points, boxes, rot)
    # a strong view unlike the weak one: the objects are cut from the weak view's points
    strong_pts, strong = view(points, boxes, [GlobalRotScaleTrans(
        rot_range=(-0.25, -0.25), scale_range=(0.93, 0.93), translation_std=(0, 0, 0))])
    model = build(middle='weight', low='off',
                  object_bank=dict(num_paste=(1, 1, 1), point_cloud_range=PCR, min_score=0.8))
    pred = InstanceData(
        bboxes_3d=torch.as_tensor(transform_boxes3d(boxes, weak.lidar_aug_matrix)),
        scores_3d=torch.tensor([0.9, 0.75, 0.9, 0.9, 0.5, 0.85]),  # 1: high, under min_score
        labels_3d=torch.arange(6) % 3)
    model.teacher_predict = lambda inputs, samples: [copy.deepcopy(pred)]
    lab_pts, lab = labeled_scene()

    def batch():
        return (dict(sup=dict(points=[lab_pts.clone()]), unsup_teacher=dict(points=[weak_pts]),
                     unsup_student=dict(points=[strong_pts])),
                dict(sup=[copy.deepcopy(lab)], unsup_teacher=[copy.deepcopy(weak)],
                     unsup_student=[copy.deepcopy(strong)]))

    inputs, samples = batch()
    losses = model.loss(inputs, samples)
    assert losses['pseudo_num_banked'] == 4  # objects 0, 2, 3, 5; 4 is middle, 1 too unsure
    assert len(samples['sup'][0].gt_instances_3d) == 0  # the bank was empty at the paste
    assert losses['pseudo_num_pasted'] == 0 and losses['pseudo_bank_size'] == 4
    inputs, samples = batch()
    losses = model.loss(inputs, samples)
    gt = samples['sup'][0].gt_instances_3d
    assert losses['pseudo_num_pasted'] == 2 and losses['pseudo_bank_size'] == 8
    assert gt.pasted.all() and sorted(gt.labels_3d.tolist()) == [0, 2]  # no class 1 banked
    expected = transform_boxes3d(boxes.astype(np.float64), lab.lidar_aug_matrix)
    for box, label in zip(gt.bboxes_3d, gt.labels_3d):
        dist = np.abs(expected - box.numpy()).max(axis=1)
        obj = int(dist.argmin())
        assert dist[obj] < 1e-4 and obj in (0, 2, 3, 5) and obj % 3 == int(label)
        inside = points_in_boxes(inputs['sup']['points'][0], box[None]).any(dim=1)
        assert set((inputs['sup']['points'][0][inside, 3] // 60).long().tolist()) == {obj}
    assert model.labeled_labels(samples['sup']).numel() == 0
    assert torch.isfinite(losses['sup_loss_heatmap'])
    # the picture of the labeled scene: its labels solid, the pasted objects dashed
    from ssl_det.engine.hooks import PseudoLabelVisHook
    shown = model.latest_pasted
    assert shown['data_sample'] is samples['sup'][0]
    assert torch.equal(shown['points'], inputs['sup']['points'][0])
    tiers = shown['data_sample'].metainfo['pseudo_tiers']
    assert torch.equal(tiers['middle'], gt.bboxes_3d) and len(tiers['high']) == 0
    drawn = PseudoLabelVisHook.draw_3d(shown['points'], shown['data_sample'], None, PCR)
    bare = copy.deepcopy(shown['data_sample'])
    bare.set_metainfo(dict(pseudo_tiers=dict(high=gt.bboxes_3d[:0])))
    assert drawn.ndim == 3 and not np.array_equal(
        drawn, PseudoLabelVisHook.draw_3d(shown['points'], bare, None, PCR))
