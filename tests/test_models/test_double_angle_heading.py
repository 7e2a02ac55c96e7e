"""CenterHead3D(heading='double_angle'): the code also holds (sin 2 yaw, cos 2 yaw), the
heading's axis, and (sin, cos) only points along it; a head that averages a front and a
back keeps the axis. (It overfits one scene: test_pillar_detector.py.)"""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from test_models.test_pillar_detector import random_frame, small_detector


def head(**kwargs):
    return small_detector(heading='double_angle', **kwargs).bbox_head


def wrap(yaw):
    return torch.remainder(yaw + np.pi, 2 * np.pi) - np.pi


def test_the_code_holds_the_heading_and_its_double_angle():
    h = head()
    assert h.code_size == 10 and h.reg[-1].out_channels == 10
    boxes = torch.tensor([[8.0, 3.0, -1.0, 4.0, 1.7, 1.5, 0.6],
                          [14.0, -5.0, -0.8, 0.7, 0.6, 1.8, -2.0]])
    gt = InstanceData(bboxes_3d=boxes, labels_3d=torch.tensor([0, 1]),
                      yaw_weights=torch.tensor([1.0, 0.0]))
    _, _, codes, _, code_w = h.get_targets(gt, (32, 32))
    yaw = boxes[:, 6]
    torch.testing.assert_close(codes[:, 6:], torch.stack(
        [yaw.sin(), yaw.cos(), (2 * yaw).sin(), (2 * yaw).cos()], dim=1))
    # an unsure heading (yaw weight 0) teaches its axis, not its direction
    assert code_w[1, 6:8].tolist() == [0.0, 0.0] and code_w[1, 8:].tolist() == [1.0, 1.0]
    assert bool((code_w[0] == 1).all())


def test_targets_equal_the_per_box_reference():
    h = head()
    gen = torch.Generator().manual_seed(1)
    for n in (0, 3, 12):
        boxes = random_frame(gen, n)
        gt = InstanceData(bboxes_3d=boxes, labels_3d=torch.randint(0, 3, (n,), generator=gen),
                          yaw_weights=(torch.rand(n, generator=gen) > 0.5).float())
        fast, ref = h.get_targets(gt, (32, 32)), h.get_targets_loop(gt, (32, 32))
        assert fast[2].shape[1] == 10 and fast[4].shape[1] == 10
        for got, want in zip(fast[2:], ref[2:]):
            torch.testing.assert_close(got, want)


def test_decoding_inverts_the_code_at_every_heading():
    h = head()
    yaw = torch.linspace(-np.pi + 1e-3, np.pi, 721)  # the axis wraps at +-pi/2 too
    code = torch.zeros(len(yaw), 10)
    code[:, 6:] = torch.stack(h._heading_code(yaw), dim=1)
    decoded = h.decode_yaw(code)
    torch.testing.assert_close(wrap(decoded - yaw), torch.zeros_like(yaw), atol=1e-5, rtol=0)
    assert bool((decoded > -np.pi - 1e-6).all()) and bool((decoded <= np.pi + 1e-6).all())


def test_an_averaged_front_and_back_keeps_the_axis():
    """A head taught a car's heading 0.4 six times and its reverse four times regresses
    the mean of their codes: (sin, cos) short, pointing at 0.4, the axis channels whole.
    Where the short (sin, cos) also drifts off the axis (by less than a right angle), the
    axis still decides the heading, and 'sincos' decodes the drifted one."""
    h = head()
    yaw = torch.tensor(0.4)
    mix = torch.stack([torch.stack(h._heading_code(y)) for y in (yaw, yaw + np.pi)])
    code = torch.zeros(1, 10)
    code[0, 6:] = 0.6 * mix[0] + 0.4 * mix[1]
    assert float(code[0, 6:8].norm()) == pytest.approx(0.2, abs=1e-6)
    assert float(h.decode_yaw(code)[0]) == pytest.approx(0.4, abs=1e-5)
    # the other way round: the back wins and the box points back, on the same axis
    code[0, 6:] = 0.4 * mix[0] + 0.6 * mix[1]
    assert float(wrap(h.decode_yaw(code) - (0.4 - np.pi))[0]) == pytest.approx(0, abs=1e-5)
    # a (sin, cos) that points off the axis by less than a right angle picks its direction
    code[0, 6:8] = torch.tensor([np.sin(0.4 + 1.2), np.cos(0.4 + 1.2)])
    assert float(h.decode_yaw(code)[0]) == pytest.approx(0.4, abs=1e-5)
    sincos = small_detector().bbox_head
    assert float(sincos.decode_yaw(code[:, :8])[0]) == pytest.approx(1.6, abs=1e-5)


def test_predict_decodes_the_axis_and_its_direction():
    h = head().eval()
    last = h.reg[-1]
    torch.nn.init.zeros_(last.weight)
    with torch.no_grad():
        last.bias.zero_()
        last.bias[3:6] = 0.5
        # direction (sin, cos) short and off the axis; the axis 2.0 (double angle 4.0)
        last.bias[6], last.bias[7] = 0.2 * np.sin(2.5), 0.2 * np.cos(2.5)
        last.bias[8], last.bias[9] = np.sin(4.0), np.cos(4.0)
    res = h.predict(torch.randn(1, 64, 32, 32), [None])[0]
    assert len(res) > 0
    torch.testing.assert_close(res.bboxes_3d[:, 6], torch.full((len(res),), 2.0))
    torch.testing.assert_close(res.yaw_norm, torch.full((len(res),), 0.2))


def test_the_options_are_checked():
    with pytest.raises(ValueError, match='heading must be one of'):
        small_detector(heading='bins')
    with pytest.raises(ValueError, match='one weight a code channel: 10'):
        small_detector(heading='double_angle', code_weights=[1.0] * 8)
    small_detector(heading='double_angle', code_weights=[1.0] * 10)


def test_reversing_an_axis_only_target_keeps_its_axis_channels():
    h = head()
    codes = torch.zeros(1, 10)
    codes[0, 6:] = torch.stack(h._heading_code(torch.tensor(0.3)))
    reg = torch.zeros(1, 10)
    reg[0, 6:8] = -codes[0, 6:8]
    out = h.nearer_heading(reg, codes, torch.tensor([True]))
    torch.testing.assert_close(out[0, 6:8], -codes[0, 6:8])
    torch.testing.assert_close(out[0, 8:], codes[0, 8:])

