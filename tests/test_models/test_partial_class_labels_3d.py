"""Partial class labels: pseudo boxes of classes the teacher confuses teach that one of
them is there, not which (``TeacherStudent3D(class_groups=...)``, the head's
``partial_class_targets``)."""
import copy

import pytest
import torch
from mmengine.structures import InstanceData

from ssl_det.registry import MODELS
from ssl_det.structures import PointCloudDataSample
from test_models.test_labeled_paste_3d import db_sampler, labeled_run  # noqa: F401
from test_models.test_teacher_student_3d import (PCR, VOXEL, build, fake_teacher,
                                                 joint_batch_case, scene, weak_and_strong)

PED_BOX = [10.0, 2.0, -1.0, 0.8, 0.6, 1.7, 0.3]


def head():
    return MODELS.build(dict(type='CenterHead3D', in_channels=16, num_classes=3,
                             point_cloud_range=PCR, voxel_size=VOXEL, out_size_factor=2,
                             feat_channels=16))


def sample(labels, class_set=None, boxes=None):
    gt = InstanceData(bboxes_3d=torch.tensor(boxes or [PED_BOX] * len(labels)),
                      labels_3d=torch.tensor(labels))
    if class_set is not None:
        gt.class_set = torch.tensor(class_set)
    ds = PointCloudDataSample()
    ds.gt_instances_3d = gt
    return ds


def window(h, box=PED_BOX, shape=(32, 32)):
    """The rows and columns of a box's Gaussian square on the head's map."""
    gt = InstanceData(bboxes_3d=torch.tensor([box]), labels_3d=torch.tensor([1]))
    _, _, ix, iy, _ = h._grid_cells(gt.bboxes_3d, shape)
    r = int(h._radii(gt.bboxes_3d)[0])
    return slice(int(iy) - r, int(iy) + r + 1), slice(int(ix) - r, int(ix) + r + 1)


def test_partial_targets_take_the_groups_union_and_spare_its_other_class():
    h = head()
    torch.manual_seed(0)
    pred = torch.rand(1, 3, 32, 32).clamp(0.05, 0.95)
    ds = sample([1], [[False, True, True]])
    heat, weight, *_ = h.get_targets(ds.gt_instances_3d, (32, 32))
    heat_t, weight_t = heat[None], weight[None, None].expand(1, 3, 32, 32)
    out, w = h.partial_class_targets(pred, heat_t, weight_t, [ds])
    rows, cols = window(h)
    union = 1 - (1 - pred[0, 1, rows, cols]) * (1 - pred[0, 2, rows, cols])
    torch.testing.assert_close(out[0, 1, rows, cols], union)
    assert bool((w[0, 2, rows, cols] == 0).all())  # the cyclist plane: not background here
    # everything else is as before: the car plane, the pedestrian plane's weight, and both
    # planes outside the square
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[rows, cols] = False
    torch.testing.assert_close(out[0, 0], pred[0, 0])
    torch.testing.assert_close(out[0, 1][outside], pred[0, 1][outside])
    torch.testing.assert_close(out[0, 2], pred[0, 2])
    torch.testing.assert_close(w[0, :2], weight_t[0, :2])
    torch.testing.assert_close(w[0, 2][outside], weight_t[0, 2][outside])


def test_a_box_of_its_own_class_only_changes_nothing():
    h = head()
    pred = torch.rand(1, 3, 32, 32).clamp(0.05, 0.95)
    ds = sample([0], [[True, False, False]], boxes=[[10.0, 2.0, -1.0, 4.0, 1.7, 1.5, 0.3]])
    heat, weight, *_ = h.get_targets(ds.gt_instances_3d, (32, 32))
    out, w = h.partial_class_targets(pred, heat[None], weight[None, None].expand(1, 3, 32, 32),
                                     [ds])
    torch.testing.assert_close(out, pred)
    torch.testing.assert_close(w, weight[None, None].expand(1, 3, 32, 32))


def test_the_group_keeps_its_other_classs_own_target():
    """A cyclist box on the pedestrian's square keeps its cyclist peak taught."""
    h = head()
    pred = torch.rand(1, 3, 32, 32).clamp(0.05, 0.95)
    cyc = [10.8, 2.0, -1.0, 1.8, 0.6, 1.7, 0.3]  # the next cell: inside the square
    ds = sample([1, 2], [[False, True, True], [False, False, True]], boxes=[PED_BOX, cyc])
    heat, weight, *_ = h.get_targets(ds.gt_instances_3d, (32, 32))
    _, w = h.partial_class_targets(pred, heat[None], weight[None, None].expand(1, 3, 32, 32),
                                   [ds])
    rows, cols = window(h)
    own = heat[2, rows, cols] > 0
    assert bool(own.any()) and bool((~own).any())
    assert bool((w[0, 2, rows, cols][own] == 1).all())
    assert bool((w[0, 2, rows, cols][~own] == 0).all())


def logits_with_peak(h, plane, shape=(32, 32)):
    """Heatmap logits low everywhere but a peak of ``plane`` at the pedestrian box."""
    ds = sample([plane])
    heat, *_ = h.get_targets(ds.gt_instances_3d, shape)
    prob = (0.02 + 0.9 * heat[plane]).clamp(max=0.92)
    logits = torch.full((1, 3, *shape), -4.0)
    logits[0, plane] = torch.logit(prob)
    return logits


def test_a_partial_box_does_not_say_which_class_of_its_group():
    """A student that puts a cyclist where the pseudo pedestrian is loses as much as one
    that puts a pedestrian there, with the group; without it, far more."""
    h = head()
    reg = torch.zeros(1, h.code_size, 32, 32)
    ped, cyc = logits_with_peak(h, 1), logits_with_peak(h, 2)
    losses = {}
    for name, class_set in (('plain', None), ('group', [[False, True, True]])):
        for guess, logits in (('ped', ped), ('cyc', cyc)):
            losses[name, guess] = float(h.loss_by_feat(logits, reg, [sample([1], class_set)])
                                        ['loss_heatmap'])
    assert losses['plain', 'cyc'] > 5 * losses['plain', 'ped']
    assert losses['group', 'cyc'] == pytest.approx(losses['group', 'ped'], rel=1e-4)
    # either guess costs about what the right one costs without the group (the union over
    # the square's off-peak cells adds the cyclist plane's small probabilities)
    assert losses['group', 'ped'] == pytest.approx(losses['plain', 'ped'], rel=0.2)


def test_pseudo_boxes_of_a_group_carry_its_classes_on_the_strong_view():
    _, boxes, (weak_pts, weak), (strong_pts, strong) = weak_and_strong(shuffle=False)
    model = build(middle='weight', low='off', class_groups=[[1, 2]])
    fake_teacher(model, weak, boxes, [0.9, 0.9, 0.55, 0.9, 0.9, 0.8])  # labels 0,1,2,0,1,2
    _, samples, stats = model.pseudo_instances(
        dict(points=[weak_pts]), [weak], dict(points=[strong_pts]), [strong])
    gt = samples[0].gt_instances_3d
    assert len(gt) == 6 and stats['pseudo/num_partial_class'] == 4
    expected = {0: [True, False, False], 1: [False, True, True], 2: [False, True, True]}
    for label, row in zip(gt.labels_3d.tolist(), gt.class_set.tolist()):
        assert row == expected[label]


def test_labeled_objects_pasted_into_a_strong_scene_keep_their_class(db_sampler):  # noqa: F811
    *_, gt, stats = labeled_run(db_sampler, shuffle=False, class_groups=[[1, 2]])
    assert gt.pasted.tolist() == [False] * 4 + [True] * 2
    assert gt.labels_3d.tolist()[4:] == [1, 2]
    assert gt.class_set[4:].tolist() == [[False, True, False], [False, False, True]]
    assert gt.class_set[1].tolist() == [False, True, True]  # the teacher's pedestrian
    assert stats['pseudo/num_partial_class'] == 2


def test_class_groups_change_the_strong_scenes_heatmap_loss_only():
    """In a training step (separate passes and the joint batch) only the strong scenes'
    heatmap loss moves; the labeled scenes' losses and the box losses do not."""
    inputs, samples, separate, _ = joint_batch_case()
    for joint in (False, True):
        losses = {}
        for groups in (None, [[1, 2]]):
            model = build(middle='weight', low='off', unsup_weight=2.0, joint_batch=joint,
                          class_groups=groups)
            model.load_state_dict(separate.state_dict())
            fake_teacher(model, samples['unsup_teacher'][0], scene()[1],
                         [0.9, 0.55, 0.9, 0.5, 0.9, 0.6])
            model.student.eval()
            losses[groups is None] = model.loss(copy.deepcopy(inputs), copy.deepcopy(samples))
        plain, grouped = losses[True], losses[False]
        assert grouped['pseudo_num_partial_class'] > 0
        assert abs(float(grouped['unsup_loss_heatmap'])
                   - float(plain['unsup_loss_heatmap'])) > 1e-4
        for key in plain:
            if key != 'unsup_loss_heatmap':
                torch.testing.assert_close(grouped[key], plain[key], msg=key)


@pytest.mark.parametrize('groups', [[[1]], [[1, 1]], [[0, 3]], [[0, 1], [1, 2]]])
def test_class_groups_are_checked(groups):
    with pytest.raises(ValueError, match='class_groups'):
        build(class_groups=groups)
