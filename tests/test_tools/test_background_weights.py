"""benchmarks/background_weights.py: would-be background proposals split by the hidden
labels, and the weights each background_power gives them."""
import os.path as osp
import sys

import pytest
import torch

from demo_helpers import ROOT

sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import background_weights as bw  # noqa: E402


def test_split_background_by_hidden_labels_confident_and_ignored_boxes():
    proposals = torch.tensor([
        [0., 0., 10., 10.],     # on a confident pseudo box: a positive, not background
        [20., 20., 30., 30.],   # on a hidden object nobody labeled: missed
        [40., 40., 50., 50.],   # inside an ignored box: neither
        [60., 60., 70., 70.],   # nothing there: background
        [21., 0., 31., 10.],    # IoU 0.33 with the third hidden box: neither group
    ])
    scores = torch.tensor([0.1, 0.6, 0.7, 0.95, 0.8])
    confident = torch.tensor([[0., 0., 10., 10.]])
    ignored = torch.tensor([[38., 38., 52., 52.]])
    # the hidden labels are in the original image; this view is shifted by +100 in x
    hidden = torch.tensor([[-100., 0., -90., 10.], [-80., 20., -70., 30.],
                           [-74., 0., -64., 10.]])

    def to_original(boxes):
        return boxes - torch.tensor([100., 0., 100., 0.])

    missed, background = bw.split_background(proposals, scores, confident, ignored, hidden,
                                             to_original)
    torch.testing.assert_close(missed, torch.tensor([0.6]))
    torch.testing.assert_close(background, torch.tensor([0.95]))
    # the same with the view taken as the original: the hidden boxes are elsewhere
    missed, background = bw.split_background(proposals, scores, confident, ignored, hidden,
                                             lambda b: b)
    assert len(missed) == 0 and len(background) == 3


def test_summary_weights_and_missed_share():
    missed, background = torch.tensor([0.5, 0.5]), torch.tensor([1.0, 1.0, 1.0])
    out = bw.summarise(missed, background)
    assert out['missed'] == 2 and out['background'] == 3
    assert out['power_1'] == dict(mean_missed=0.5, mean_background=1.0, missed_share=0.25)
    assert out['power_2']['mean_missed'] == 0.25
    assert out['power_2']['missed_share'] == pytest.approx(0.5 / 3.5, abs=1e-4)
    assert out['missed_quantiles']['0.5'] == 0.5
