"""benchmarks/heading_errors_3d.py: which labeled box a prediction sits on, and the kinds
of heading error."""
import os.path as osp
import sys

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import heading_errors_3d as he  # noqa: E402


def test_error_kinds_tell_right_reversed_and_between():
    errors = torch.tensor([0.0, 0.49, -0.49, np.pi, -np.pi + 0.3, 3 * np.pi + 0.2, 1.0,
                           -1.6, 2 * np.pi + 0.1])
    assert he.error_kind(errors).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 0]


def test_a_box_sits_on_the_nearest_labeled_box_of_its_class_within_the_radius():
    gt = torch.tensor([[10.0, 0.0, -1, 4, 2, 1.5, 0.0],
                       [10.5, 0.5, -1, 0.6, 0.6, 1.7, 0.0],
                       [30.0, 0.0, -1, 4, 2, 1.5, 0.0]])
    gt_labels = torch.tensor([0, 1, 0])
    boxes = torch.tensor([[10.4, 0.4, -1, 4, 2, 1.5, 1.0],     # a car by the pedestrian
                          [10.4, 0.4, -1, 0.6, 0.6, 1.7, 1.0],  # the pedestrian
                          [31.5, 0.0, -1, 4, 2, 1.5, 1.0],      # 1.5 m off the far car
                          [29.5, 0.0, -1, 0.6, 0.6, 1.7, 1.0]])  # no pedestrian near
    nearest, on = he.sitting_on(boxes, torch.tensor([0, 1, 0, 1]), gt, gt_labels, 1.0)
    assert on.tolist() == [True, True, False, False]
    assert nearest[:2].tolist() == [0, 1]
    _, on = he.sitting_on(boxes, torch.tensor([0, 1, 0, 1]), gt, gt_labels, 2.0)
    assert on.tolist() == [True, True, True, False]
    nearest, on = he.sitting_on(boxes, torch.tensor([0, 1, 0, 1]), gt[:0], gt_labels[:0], 1.0)
    assert not bool(on.any()) and len(nearest) == 4
