"""``TeacherStudent3D(patch_mix=True)``: the strong scenes of a batch trade their patch
shuffle's patches after the teacher has labeled them. Each patch's points, whole pseudo boxes
(with their weights) and ignored pieces travel together, nothing is lost or doubled."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from ssl_det.datasets.transforms import BEVPatchShuffle, GlobalRotScaleTrans, RandomFlip3D
from ssl_det.structures import points_in_boxes, transform_boxes3d
from ssl_det.structures.bev_shuffle import make_shuffle, patch_sources, shuffle_box_pieces
from test_models.test_teacher_student_3d import PCR, build, scene, view

NUM_SCENES = 3
SCORES = [0.9, 0.5, 0.9, 0.9, 0.9, 0.6]  # box 1 and 5 middle, box 4 cut by x = 12.8
ID = 10000  # point id = ID * scene + index of the point in its scene


def scenes():
    """Three scenes whose objects sit at different places (each scene moved by its own step
    along y; box 4 stays cut by x = 12.8), each seen weak (flip) and strong (rotation,
    scaling, its own patch shuffle)."""
    out = []
    for k in range(NUM_SCENES):
        points, boxes = scene(seed=k)
        points[:, 1] += 0.6 * k
        boxes[:, 1] += 0.6 * k
        points[:, 3] += ID * k
        np.random.seed(20 + k)
        weak = view(points, boxes, [RandomFlip3D(flip_y_ratio=1.0)])
        strong = view(points, boxes, [
            RandomFlip3D(flip_y_ratio=0.0, flip_x_ratio=0.0),
            GlobalRotScaleTrans(rot_range=(0.2, 0.2), scale_range=(1.05, 1.05),
                                translation_std=(0, 0, 0)),
            BEVPatchShuffle(point_cloud_range=PCR, grid=(2, 2))])
        out.append((points, boxes, weak, strong))
    return out


def teacher_on(model, cases):
    """The teacher 'predicts' each scene's objects in its weak view, with SCORES."""
    preds = [InstanceData(
        bboxes_3d=torch.as_tensor(transform_boxes3d(boxes, weak[1].lidar_aug_matrix)),
        scores_3d=torch.tensor(SCORES), labels_3d=torch.arange(len(boxes)) % 3)
        for _, boxes, weak, _ in cases]
    model.teacher_predict = lambda inputs, samples: [p.clone() for p in preds]


def mixed(cases, **kwargs):
    model = build(middle='weight', low='off', patch_mix=True, **kwargs)
    teacher_on(model, cases)
    torch.manual_seed(1)
    out, samples, stats = model.pseudo_instances(
        dict(points=[c[2][0] for c in cases]), [c[2][1] for c in cases],
        dict(points=[c[3][0] for c in cases]), [c[3][1] for c in cases])
    return out['points'], samples, stats


def owner(cases, point_id):
    """(scene, object) of a point id; object -1 for ground."""
    k, i = divmod(int(point_id), ID)
    points, boxes = cases[k][:2]
    inside = np.flatnonzero(points_in_boxes(points[i:i + 1], boxes)[0])
    return k, int(inside[0]) if len(inside) else -1


def test_every_point_box_and_weight_lands_in_one_mixed_scene_on_its_object():
    cases = scenes()
    points, samples, stats = mixed(cases)
    ids = torch.cat(points)[:, 3].long().tolist()
    expected = torch.cat([c[3][0] for c in cases])[:, 3].long().tolist()
    assert sorted(ids) == sorted(expected)  # no point lost or doubled
    assert len(set(ids)) == len(ids)
    # the mix mixes: some mixed scene holds points of two scenes or more
    assert max(len({i // ID for i in p[:, 3].long().tolist()}) for p in points) >= 2
    assert stats['pseudo/num_high'] == 3 * NUM_SCENES
    seen = []
    for pts, sample in zip(points, samples):
        gt = sample.gt_instances_3d
        inside = points_in_boxes(pts.numpy(), gt.bboxes_3d.numpy())
        for b in range(len(gt)):
            objects = {owner(cases, i) for i in pts[inside[:, b], 3].long().tolist()}
            assert len(objects) == 1 and inside[:, b].sum() == 60  # its whole object only
            (k, obj), = objects
            assert obj >= 0 and gt.labels_3d[b] == obj % 3
            want = SCORES[obj] if SCORES[obj] < 0.7 else 1.0
            assert float(gt.weights[b]) == pytest.approx(want)  # its weight came with it
            seen.append((k, obj))
        assert sample.bev_mix['sources'] and len(sample.bev_mix['sources']) == 4
    # every scene's five whole boxes, once each
    assert sorted(seen) == sorted((k, o) for k in range(NUM_SCENES) for o in (0, 1, 2, 3, 5))


def test_the_cut_boxes_points_stay_ignored_wherever_they_land():
    cases = scenes()
    points, samples, _ = mixed(cases)
    total = 0
    for pts, sample in zip(points, samples):
        ignored = sample.ignored_instances_3d
        assert 'patch' not in ignored  # a field of the mix only
        cut = torch.tensor([owner(cases, i)[1] == 4 for i in pts[:, 3].long().tolist()])
        covered = points_in_boxes(pts.numpy(), ignored.bboxes_3d.numpy()).any(axis=1)
        assert covered[cut.numpy()].all()
        total += int(cut.sum())
    assert total == 60 * NUM_SCENES


def test_the_tier_picture_follows_the_mix():
    cases = scenes()
    points, samples, _ = mixed(cases)
    for pts, sample in zip(points, samples):
        tiers = sample.pseudo_tiers
        drawn = torch.cat([tiers['high'], tiers['middle']])
        np.testing.assert_allclose(
            np.sort(drawn[:, 0].numpy()), np.sort(sample.gt_instances_3d.bboxes_3d[:, 0].numpy()),
            atol=1e-5)
        assert len(tiers['high_labels']) == len(tiers['high'])


def test_patch_sources_fill_every_patch_from_every_scene_once():
    info = make_shuffle(PCR, (2, 2), [0, 1, 2, 3])
    torch.manual_seed(0)
    sources = patch_sources(5, info)
    assert sources.shape == (5, 4)
    for column in sources.T:
        assert sorted(column.tolist()) == list(range(5))
    assert len({tuple(r) for r in sources}) > 1


def test_shuffle_box_pieces_know_their_patch():
    info = make_shuffle(PCR, (2, 2), [3, 2, 0, 1])
    _, boxes = scene()
    pieces, owner_idx, patch = shuffle_box_pieces(boxes, info, return_patch=True)
    # the cut box 4 straddles patches 0 and 1 (x = 12.8) at y = 3: source patches 2 and 3
    assert sorted(patch[owner_idx == 4].tolist()) == [0, 1]
    assert patch[owner_idx == 0].tolist() == [3]  # box 0 in source patch 0 -> 3


def test_patch_mix_needs_shuffled_strong_views_and_refuses_the_heatmap_and_pastes():
    cases = scenes()
    model = build(middle='weight', low='off', patch_mix=True)
    teacher_on(model, cases)
    strong = [view(c[0], c[1], [RandomFlip3D(flip_y_ratio=0.0)]) for c in cases]
    with pytest.raises(ValueError, match='shuffled'):
        model.pseudo_instances(dict(points=[c[2][0] for c in cases]), [c[2][1] for c in cases],
                               dict(points=[s[0] for s in strong]), [s[1] for s in strong])
    with pytest.raises(ValueError, match='patch_mix'):
        build(patch_mix=True, dense_weight=1.0)
