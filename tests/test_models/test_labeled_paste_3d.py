"""TeacherStudent3D(labeled_paste=...): the labeled objects of a GT database are pasted into
each pseudo-labeled strong scene after the teacher has labeled it, through the strong view's
own map from the raw scene (a rotation and a scaling here, not their own inverses), never onto
a box the teacher saw, as weight-1 ground truth beside the pseudo boxes."""
import os.path as osp

import numpy as np
import pytest
import torch

import ssl_det.datasets  # noqa: F401
import ssl_det.models  # noqa: F401
from ssl_det.datasets.point_cloud_io import dump_info_file, save_points
from ssl_det.datasets.transforms import BEVPatchShuffle, GlobalRotScaleTrans, RandomFlip3D
from ssl_det.datasets.transforms.object_sample import create_gt_database
from ssl_det.models.utils.object_bank import ObjectBank
from ssl_det.ops import overlaps_bev
from ssl_det.structures import points_in_boxes, transform_boxes3d
from ssl_det.structures.bev_shuffle import shuffle_box_pieces

from test_models.test_teacher_student_3d import PCR, build, fake_teacher, scene, view

CLASSES = ('Car', 'Pedestrian', 'Cyclist')
DB_ID = 100000  # the database's points carry ids from here (the scene's are below)


@pytest.fixture(scope='module')
def db_sampler(tmp_path_factory):
    """A labeled frame with the test scene's six objects (object k of class k % 3), its
    points numbered from DB_ID, and the GT database built from it."""
    root = str(tmp_path_factory.mktemp('labeled'))
    points, boxes = scene(seed=1)
    points[:, 3] += DB_ID
    save_points(osp.join(root, 'points', '000000.bin'), points)
    frame = dict(frame_id='000000', lidar_path='points/000000.bin', num_point_features=4,
                 instances=[dict(bbox_3d=b.tolist(), label_name=CLASSES[k % 3])
                            for k, b in enumerate(boxes)])
    info = osp.join(root, 'labeled.json')
    dump_info_file(dict(metainfo=dict(classes=list(CLASSES), point_dim=4), data_list=[frame]),
                   info)
    db = create_gt_database(info, osp.join(root, 'gt_db'))
    return dict(type='ObjectSample', db_info_file=db, classes=CLASSES,
                sample_groups=dict(Car=2, Pedestrian=2, Cyclist=2), min_points=5)


def views(shuffle):
    points, boxes = scene()
    np.random.seed(9)
    weak_pts, weak = view(points, boxes, [RandomFlip3D(flip_y_ratio=1.0)])
    strong_t = [RandomFlip3D(flip_y_ratio=0.0, flip_x_ratio=0.0),
                GlobalRotScaleTrans(rot_range=(0.3, 0.3), scale_range=(1.07, 1.07),
                                    translation_std=(0, 0, 0))]
    if shuffle:
        strong_t.append(BEVPatchShuffle(point_cloud_range=PCR, grid=(2, 2)))
    strong_pts, strong = view(points, boxes, strong_t)
    return boxes, (weak_pts, weak), (strong_pts, strong)


def labeled_run(db_sampler, shuffle, seen=(0, 1, 2, 3), scores=None, num_paste=(2, 2, 2),
                yaw_norm=None, **extra):
    """The teacher sees objects ``seen`` (high unless ``scores`` say otherwise); every
    database object may be drawn. With ``yaw_norm`` (one a seen box), ``min_yaw_norm=0.5``;
    ``extra``: more model options."""
    boxes, (weak_pts, weak), (strong_pts, strong) = views(shuffle)
    if yaw_norm is not None:
        extra['min_yaw_norm'] = 0.5
    model = build(middle='weight', low='off', labeled_paste=dict(
        db_sampler=db_sampler, num_paste=num_paste, point_cloud_range=PCR), **extra)
    seen = list(seen)
    fake_teacher(model, weak, boxes[seen], scores or [0.9] * len(seen))
    if yaw_norm is not None:
        teach = model.teacher_predict

        def with_yaw_norm(inputs, samples):
            preds = teach(inputs, samples)
            preds[0].yaw_norm = torch.tensor(yaw_norm)
            return preds
        model.teacher_predict = with_yaw_norm
    inputs, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    return model, boxes, strong, inputs['points'][0], samples[0].gt_instances_3d, stats


def test_labeled_objects_land_through_the_strong_views_map_off_the_teachers_boxes(db_sampler):
    """Without a shuffle: the database's objects 4 and 5 (the teacher saw 0-3, where the
    others would land) are pasted at the strong view's image of their raw boxes, with their
    own points only, weight 1, after the pseudo boxes."""
    model, boxes, strong, points, gt, stats = labeled_run(db_sampler, shuffle=False)
    assert stats['pseudo/num_labeled_pasted'] == 2
    assert gt.pasted.tolist() == [False] * 4 + [True] * 2
    assert gt.labels_3d[gt.pasted].tolist() == [1, 2]  # objects 4 and 5
    assert torch.equal(gt.weights[gt.pasted], torch.ones(2))
    expected = transform_boxes3d(boxes[[4, 5]].astype(np.float64), strong.lidar_aug_matrix)
    assert np.allclose(gt.bboxes_3d[gt.pasted].numpy(), expected, atol=1e-4)
    # not the weak view's map, nor the raw boxes: the direction is the strong view's
    weak_mat = np.diag([1.0, -1.0, 1.0, 1.0])
    assert not np.allclose(expected, transform_boxes3d(boxes[[4, 5]].astype(np.float64),
                                                       weak_mat), atol=0.1)
    for box in gt.bboxes_3d[gt.pasted]:
        inside = points_in_boxes(points, box[None]).any(dim=1)
        ids = points[inside, 3]
        assert len(ids) >= 5 and bool((ids >= DB_ID).all())  # the scene's points replaced
    assert int((points[:, 3] >= DB_ID).sum()) == sum(
        int(points_in_boxes(points, b[None]).any(dim=1).sum()) for b in gt.bboxes_3d[gt.pasted])
    # the picture of the strong scene draws them as high boxes, after the pseudo ones
    tiers = strong.metainfo['pseudo_tiers']
    assert torch.equal(tiers['high'][4:], gt.bboxes_3d[gt.pasted])
    assert tiers['high_labels'].tolist() == [0, 1, 2, 0, 1, 2]
    # the unseen objects' own points were under the pasted boxes, and are gone
    assert not bool(((points[:, 3] >= 240) & (points[:, 3] < 360)).any())


def test_pasted_labeled_objects_teach_their_heading(db_sampler):
    # min_yaw_norm masks the unsure pseudo boxes' headings, never a labeled object's
    *_, gt, stats = labeled_run(db_sampler, shuffle=False, yaw_norm=[0.9, 0.2, 0.9, 0.3])
    assert gt.pasted.tolist() == [False] * 4 + [True] * 2
    assert gt.yaw_weights.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert stats['pseudo/num_yaw_masked'] == 2


def test_pasted_labeled_objects_teach_their_direction(db_sampler):
    # pseudo_heading='axis' teaches the pseudo boxes' axis only, a labeled object's direction
    *_, gt, _ = labeled_run(db_sampler, shuffle=False, pseudo_heading='axis')
    assert gt.pasted.tolist() == [False] * 4 + [True] * 2
    assert gt.yaw_axis.tolist() == [True] * 4 + [False] * 2


def test_nothing_is_pasted_onto_a_box_the_teacher_saw(db_sampler):
    """The teacher sees all six objects, 4 and 5 below every tier (0.2, above the low
    tier's floor 0.1): every database object would land on one."""
    model, boxes, strong, points, gt, stats = labeled_run(
        db_sampler, shuffle=False, seen=range(6), scores=[0.9] * 4 + [0.2] * 2)
    assert len(gt) == 4  # 4 and 5 are no pseudo boxes, yet nothing lands on them
    assert stats['pseudo/num_labeled_pasted'] == 0 and not bool(gt.pasted.any())
    assert not bool((points[:, 3] >= DB_ID).any())


def test_with_the_shuffle_pasted_boxes_avoid_where_the_shuffle_moved_the_boxes(db_sampler):
    """The teacher sees object 0 only, below every tier; the shuffle moves its patch away.
    The pasted boxes avoid the moved box's pieces, and the place it left is free: all six
    database objects are pasted, the car of object 0 where object 0 was before the shuffle."""
    model, boxes, strong, points, gt, stats = labeled_run(db_sampler, shuffle=True, seen=(0,),
                                                          scores=[0.2])
    pasted = gt.bboxes_3d[gt.pasted]
    assert len(gt) == 6 and stats['pseudo/num_labeled_pasted'] == 6
    seen = torch.as_tensor(transform_boxes3d(boxes[:1].astype(np.float64),
                                             strong.lidar_aug_matrix))
    pieces, _ = shuffle_box_pieces(seen, strong.bev_shuffle)
    assert not bool(overlaps_bev(pasted.double(), torch.as_tensor(pieces).double()).any())
    assert bool(overlaps_bev(seen, pasted.double()).any())  # the place object 0 left
    for box in pasted:
        ids = points[points_in_boxes(points, box[None]).any(dim=1), 3]
        assert len(ids) >= 5 and bool((ids >= DB_ID).all())


def test_the_student_learns_the_pasted_boxes(db_sampler):
    """Through ``loss``: finite unlabeled losses, the count logged."""
    boxes, (weak_pts, weak), (strong_pts, strong) = views(shuffle=False)
    model = build(middle='weight', low='off', labeled_paste=dict(
        db_sampler=db_sampler, num_paste=(2, 2, 2), point_cloud_range=PCR))
    fake_teacher(model, weak, boxes[:4], [0.9] * 4)
    losses = model.unsup_loss(dict(points=[weak_pts]), [weak], dict(points=[strong_pts]),
                              [strong])
    assert losses['pseudo_num_labeled_pasted'] == 2
    assert torch.isfinite(losses['unsup_loss_heatmap']) and losses['unsup_loss_heatmap'] > 0


def test_bank_from_database_keeps_every_object_with_its_raw_points(db_sampler):
    bank = ObjectBank.from_database(db_sampler, (1, 1, 1), PCR)
    assert bank.sizes() == [2, 2, 2]
    points, boxes = scene(seed=1)
    for label, store in enumerate(bank.stores):
        for box, pts in store:
            k = int(np.abs(boxes - box.numpy()).max(axis=1).argmin())
            assert np.allclose(boxes[k], box.numpy(), atol=1e-5) and k % 3 == label
            assert bool(points_in_boxes(pts, box[None].double()).all())
            assert bool((pts[:, 3] >= DB_ID).all())
    empty = dict(db_sampler, min_points=10**6)
    with pytest.raises(ValueError, match='no object'):
        ObjectBank.from_database(empty, (1, 1, 1), PCR)


def test_labeled_paste_refuses_dense_distillation(db_sampler):
    with pytest.raises(ValueError, match='dense'):
        build(dense_weight=1.0, labeled_paste=dict(db_sampler=db_sampler, num_paste=(1, 1, 1),
                                                   point_cloud_range=PCR))


def test_fill_pastes_up_to_the_samplers_targets_counting_the_pseudo_boxes(db_sampler):
    """``num_paste='fill'``: each class up to ``sample_groups`` (here 2 / 1 / 2), the scene's
    pseudo boxes of either tier counted as present. The teacher saw two cars (0, 3), a
    pedestrian (1, a middle box) and a cyclist (2); the database's free objects are a
    pedestrian (4) and a cyclist (5): the pedestrian target is met, so only the cyclist
    comes (fixed counts of 2 / 2 / 2 paste both)."""
    sampler = dict(db_sampler, sample_groups=dict(Car=2, Pedestrian=1, Cyclist=2))
    scores = [0.9, 0.55, 0.9, 0.9]
    *_, gt, stats = labeled_run(sampler, shuffle=False, scores=scores, num_paste='fill')
    assert gt.weights[:4].tolist() == pytest.approx([1.0, 0.55, 1.0, 1.0])  # the middle box
    assert gt.labels_3d[gt.pasted].tolist() == [2]
    assert stats['pseudo/num_labeled_pasted'] == 1
    *_, gt, _ = labeled_run(sampler, shuffle=False, scores=scores)
    assert gt.labels_3d[gt.pasted].tolist() == [1, 2]


def test_fill_counts_and_bad_num_paste(db_sampler):
    bank = ObjectBank.from_database(dict(db_sampler, sample_groups=dict(Car=3, Cyclist=1)),
                                    'fill', PCR)
    assert bank.num_paste == [3, 0, 1]  # a class the sampler does not name: none
    assert bank.fill_counts(torch.tensor([0, 0, 2, 2, 1])) == [1, 0, 0]
    assert bank.fill_counts(torch.zeros(0, dtype=torch.long)) == [3, 0, 1]
    with pytest.raises(ValueError, match="'fill'"):
        ObjectBank.from_database(db_sampler, 'full', PCR)
    with pytest.raises(ValueError, match="'fill'"):
        build(labeled_paste=dict(db_sampler=db_sampler, num_paste='full',
                                 point_cloud_range=PCR))
