"""benchmarks/pseudo_label_filters_3d.py: the ranking measures, and the second view's boxes
mapped back onto the first view's (a view that is not its own inverse)."""
import os.path as osp
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import pseudo_label_filters_3d as filters  # noqa: E402


def test_auroc_and_precision_at_a_share_of_the_right_boxes():
    values = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    right = np.array([True, False, True, False, True, False])
    # pairs (right, false) with right above: (0.9: 3) + (0.7: 2) + (0.5: 1) = 6 of 9
    assert filters.auroc(values, right) == pytest.approx(6 / 9)
    assert filters.auroc(values, np.ones(6, bool)) is None
    assert filters.auroc(np.zeros(4), np.array([True, False, True, False])) == 0.5  # ties
    # keeping 2 of the 3 right boxes needs the threshold 0.7: 2 right of 3 kept
    assert filters.precision_at(values, right, 0.5) == pytest.approx(2 / 3)
    assert filters.precision_at(values, right, 1.0) == pytest.approx(3 / 5)
    assert filters.precision_at(values, np.zeros(6, bool), 0.5) is None


def test_second_view_boxes_are_mapped_back_onto_the_first_views():
    """A teacher that finds the same world objects in both views: every box's view IoU is
    1 and its view score its own, through a flip with scaling (not its own inverse); the
    points signal counts each object's points."""
    from ssl_det.models.utils.teacher_views import view_matrix
    from ssl_det.structures import transform_boxes3d
    world = torch.tensor([[10.0, 3.0, -1.0, 4.0, 1.8, 1.5, 0.3],
                          [20.0, -6.0, -1.0, 0.7, 0.7, 1.8, 1.0]], dtype=torch.float64)
    matrix = view_matrix(flip_y=True, rot=0.2, scale=1.1)
    assert not np.allclose(matrix @ matrix, np.eye(4))

    def predict(inputs, samples):
        out = []
        for s, score in zip(samples, (0.9, 0.6)):
            m = np.asarray(s.metainfo['lidar_aug_matrix'])
            out.append(SimpleNamespace(pred_instances_3d=InstanceData(
                bboxes_3d=torch.as_tensor(transform_boxes3d(world, m)).float(),
                scores_3d=torch.tensor([score, score]), labels_3d=torch.tensor([0, 1]))))
        return out
    model = SimpleNamespace(teacher=SimpleNamespace(predict=predict), low_score_thr=0.1)
    rng = np.random.default_rng(0)
    pts = [np.c_[rng.uniform(-0.3, 0.3, (n, 3)) * b[3:6] + b[:3], np.zeros(n)]
           for n, b in zip((30, 12), world.numpy())]
    points = torch.tensor(np.concatenate(pts), dtype=torch.float32)
    sample_type = type('Sample', (), {'__init__': lambda self, metainfo: setattr(
        self, 'metainfo', metainfo)})
    sample = sample_type(metainfo=dict(lidar_aug_matrix=np.eye(4)))
    # the labeled boxes' log sizes: the car's exactly at its class's mean, the pedestrian's
    # 2 standard deviations off in height (its width and length at the mean)
    sizes = torch.zeros(3, 2, 3, dtype=torch.float64)
    sizes[:, 1] = 0.1
    sizes[0, 0] = torch.log(world[0, 3:6])
    sizes[1, 0] = torch.log(world[1, 3:6]) - torch.tensor([0.0, 0.0, 0.2], dtype=torch.float64)
    boxes, labels, values = filters.signals(model, points, sample, matrix, sizes)
    assert labels.tolist() == [0, 1]
    np.testing.assert_allclose(values['size_fit'], [0.0, -2.0], atol=1e-4)
    np.testing.assert_allclose(values['view_iou'], [1.0, 1.0], atol=1e-3)
    np.testing.assert_allclose(values['view_score'], [0.75, 0.75], atol=1e-6)
    np.testing.assert_allclose(values['score_x_iou'], [0.9, 0.9], atol=1e-3)
    assert values['points'].tolist() == [30, 12]


def test_false_boxes_are_told_apart_by_kind():
    """Right; on nothing; on another class's object; on its class's, wrong by its heading
    alone (a car turned 90 degrees); on its class's but shifted off it."""
    car = [10.0, 3.0, -1.0, 4.0, 1.8, 1.5, 0.3]
    ped = [20.0, -6.0, -1.0, 0.7, 0.7, 1.8, 1.0]
    gt_boxes = torch.tensor([car, ped], dtype=torch.float64)
    gt_labels = torch.tensor([0, 1])
    turned = car[:6] + [0.3 + np.pi / 2]
    shifted = [car[0] + 2.5] + car[1:]
    boxes = torch.tensor([car, [0.0, 20.0, -1.0, 4.0, 1.8, 1.5, 0.0], ped, turned, shifted],
                         dtype=torch.float64)
    labels = torch.tensor([0, 0, 2, 0, 0])
    kind = filters.kinds(boxes, labels, gt_boxes, gt_labels,
                         torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))
    assert [filters.KINDS[k] for k in kind] == ['right', 'on_nothing', 'other_class',
                                                'heading', 'misplaced']
    assert list(filters.kinds(boxes, labels, gt_boxes[:0], gt_labels[:0],
                              torch.ones(3, dtype=torch.float64))) == [1] * 5


def test_head_signals_read_the_teachers_class_scores_and_yaw_norm():
    from ssl_det.models.utils.teacher_views import view_matrix
    box = torch.tensor([[10.0, 3.0, -1.0, 4.0, 1.8, 1.5, 0.3],
                        [20.0, -6.0, -1.0, 0.7, 0.7, 1.8, 1.0]])

    def predict(inputs, samples):
        return [SimpleNamespace(pred_instances_3d=InstanceData(
            bboxes_3d=box, scores_3d=torch.tensor([0.8, 0.6]), labels_3d=torch.tensor([0, 2]),
            class_scores=torch.tensor([[0.8, 0.3, 0.1], [0.2, 0.5, 0.6]]),
            yaw_norm=torch.tensor([0.9, 0.4]))) for _ in samples]
    model = SimpleNamespace(teacher=SimpleNamespace(predict=predict), low_score_thr=0.1)
    sample = type('Sample', (), {'__init__': lambda self, metainfo: setattr(
        self, 'metainfo', metainfo)})(metainfo=dict(lidar_aug_matrix=np.eye(4)))
    sizes = torch.ones(3, 2, 3, dtype=torch.float64)
    _, _, values = filters.signals(model, torch.zeros(0, 4), sample,
                                   view_matrix(flip_y=True), sizes)
    np.testing.assert_allclose(values['class_margin'], [0.5, 0.1], atol=1e-6)
    np.testing.assert_allclose(values['yaw_norm'], [0.9, 0.4], atol=1e-6)
    np.testing.assert_allclose(values['score_x_yaw_norm'], [0.72, 0.24], atol=1e-6)


def test_size_stats_read_the_labeled_split_per_class(tmp_path):
    from mmengine.config import ConfigDict
    frames = [dict(instances=[dict(label_name='Car', bbox_3d=[0, 0, 0, 4.0, 2.0, 1.5, 0]),
                              dict(label_name='Pedestrian', bbox_3d=[0, 0, 0, .6, .6, 1.7, 0])]),
              dict(instances=[dict(label_name='Car', bbox_3d=[0, 0, 0, 4.4, 1.8, 1.5, 0]),
                              dict(label_name='Pedestrian', bbox_3d=[0, 0, 0, .8, .6, 1.9, 0])])]
    import json
    (tmp_path / 'lab.json').write_text(json.dumps(dict(data_list=frames)))
    cfg = dict(labeled_dataset=ConfigDict(data_root=str(tmp_path), ann_file='lab.json'))
    stats = filters.size_stats(cfg, ['Pedestrian', 'Car'])
    logs = torch.log(torch.tensor([[4.0, 2.0, 1.5], [4.4, 1.8, 1.5]], dtype=torch.float64))
    torch.testing.assert_close(stats[1, 0], logs.mean(dim=0))
    torch.testing.assert_close(stats[1, 1], logs.std(dim=0).clamp(min=1e-3))  # equal heights
    assert stats[0, 0, 2].item() == pytest.approx(np.log([1.7, 1.9]).mean())
    with pytest.raises(ValueError, match='Cyclist'):
        filters.size_stats(cfg, ['Cyclist'])


def test_clash_margin_reads_other_classes_on_the_same_spot():
    """A pedestrian under a higher cyclist box (overlapping), one beside a car's centre
    (0.3 m, no overlap needed), one alone; boxes of its own class are no rivals."""
    boxes = torch.tensor([[0.0, 0.0, 0, 0.8, 0.6, 1.7, 0],      # pedestrian
                          [0.2, 0.0, 0, 1.8, 0.6, 1.7, 0],      # cyclist over it
                          [10.0, 0.0, 0, 0.1, 0.1, 1.7, 0],     # pedestrian, tiny
                          [10.3, 0.0, 0, 0.1, 0.1, 1.5, 0],     # car 0.3 m away, no overlap
                          [30.0, 0.0, 0, 0.8, 0.6, 1.7, 0],     # pedestrian alone
                          [30.1, 0.0, 0, 0.8, 0.6, 1.7, 0]],    # another pedestrian on it
                         dtype=torch.float64)
    labels = torch.tensor([1, 2, 1, 0, 1, 1])
    scores = torch.tensor([0.5, 0.7, 0.6, 0.2, 0.4, 0.3], dtype=torch.float64)
    torch.testing.assert_close(filters.clash_margin(boxes, labels, scores),
                               torch.tensor([-0.2, 0.2, 0.4, -0.4, 0.4, 0.3],
                                            dtype=torch.float64))


def test_column_shape_reads_the_points_over_under_and_inside_each_box():
    """A person-sized box over a knee-high post (points only in its lower part), one on a
    person (points to its top, thin at the legs), one under a tall pole (points above it)."""
    boxes = torch.tensor([[0.0, 0.0, 0.0, 0.6, 0.6, 2.0, 0],
                          [5.0, 0.0, 0.0, 0.6, 0.6, 2.0, 0],
                          [10.0, 0.0, 0.0, 0.6, 0.6, 2.0, 0]], dtype=torch.float64)
    post = [[0.0, 0.0, z, 1] for z in (-0.9, -0.6, -0.3, 0.0)]  # 1.0 m below, 3 of 4 low
    person = [[5.0, 0.0, z, 1] for z in (-0.5, 0.2, 0.5, 0.8, 0.95)]     # 1 of 5 low
    pole = [[10.0, 0.0, z, 1] for z in (-0.8, 0.0, 0.9, 1.2, 1.6, 2.4)]  # 2 within 1 m over
    points = torch.tensor(post + person + pole, dtype=torch.float32)
    scores = torch.tensor([0.8, 0.6, 0.5], dtype=torch.float64)
    got = filters.column_shape(points, boxes, scores)
    torch.testing.assert_close(got['top_gap'], torch.tensor([-1.0, -0.05, -0.1],
                                                            dtype=torch.float64))
    torch.testing.assert_close(got['above'], torch.tensor([0.0, 0.0, -2.0],
                                                          dtype=torch.float64))
    torch.testing.assert_close(got['low_share'], torch.tensor([-0.75, -0.2, -1 / 3],
                                                              dtype=torch.float64))
    torch.testing.assert_close(got['score_x_top_support'],
                               scores * torch.exp(torch.tensor([-1.0, -0.05, -0.1],
                                                               dtype=torch.float64)))
