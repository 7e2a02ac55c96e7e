"""ssl_det.ops.roi_align / RoIAlign / replace_roi_align against mmcv.ops.roi_align, by
gradcheck, and on an mmdet Faster R-CNN."""
import os.path as osp

import pytest
import torch
from torch import nn

from ssl_det.ops import RoIAlign, replace_roi_align, roi_align
from ssl_det.ops._ext_loader import load_ext

_ext = load_ext()
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FASTER_RCNN = osp.join(ROOT, 'configs/_base_/models/faster-rcnn_r18-narrow_fpn_demo.py')
IMPLS = {'auto': 0, 'planar': 1, 'channels_last': 2}
# mmcv's maths, operation for operation: equal up to rounding (bitwise with stock builds).
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def make_case(seed, n=3, c=5, h=13, w=11, k=48, stride=4, dtype=torch.float64):
    """Features and RoIs (in input-image pixels, images in any order) that cover every
    branch: RoIs partly and fully outside the map, tiny and zero-size ones, exactly on the
    border, the whole image."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    size = torch.tensor([w * stride, h * stride], dtype=torch.float64)
    ctr = (torch.rand(k, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3) * size
    wh = torch.rand(k, 2, generator=g, dtype=torch.float64) ** 2 * size
    boxes = torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1)
    special = torch.tensor([
        [3.0, 5.0, 3.3, 5.2],                                      # tiny
        [7.0, 9.0, 7.0, 9.0],                                      # zero size
        [0.0, 0.0, size[0], size[1]],                              # whole image
        [size[0] + 3 * stride, 2.0, size[0] + 9 * stride, 30.0],   # fully outside (right)
        [-20.0 * stride, -9.0 * stride, -2.0 * stride, -1.0],      # fully outside (top-left)
        [-stride, -stride, size[0] + stride, size[1] + stride],    # one pixel past each side
        [size[0] - stride, size[1] - stride, size[0], size[1]],    # the last pixel
        [-3.0, 4.0, 12.0, size[1] + 10.0],                         # partly outside
    ], dtype=torch.float64)
    boxes[:len(special)] = special
    batch = torch.randint(0, n, (k, 1), generator=g).to(torch.float64)
    return x.to(dtype), torch.cat([batch, boxes], dim=1).to(dtype)


def mmcv_forward_backward(x, rois, grad, size, scale, ratio, aligned, pool_mode='avg'):
    mmcv_ops = pytest.importorskip('mmcv.ops')
    xr = x.clone().requires_grad_()
    out = mmcv_ops.roi_align(xr, rois, size, scale, ratio, pool_mode, aligned)
    out.backward(grad)
    return out.detach(), xr.grad


# (spatial_scale, feature map (h, w)): stride 4 and stride 32 levels.
LEVELS = [(1 / 4, (13, 11), 4), (1 / 32, (5, 4), 32)]


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('ratio', [0, 2])
@pytest.mark.parametrize('level', LEVELS, ids=['s4', 's32'])
@pytest.mark.parametrize('size', [(7, 7), (3, 5)])
def test_matches_mmcv(dtype, aligned, ratio, level, size):
    scale, (h, w), stride = level
    x, rois = make_case(11 + ratio + 3 * aligned, h=h, w=w, stride=stride, dtype=dtype)
    grad = torch.randn(rois.shape[0], x.shape[1], *size, dtype=dtype,
                       generator=torch.Generator().manual_seed(5))
    want, want_grad = mmcv_forward_backward(x, rois, grad, size, scale, ratio, aligned)

    xr = x.clone().requires_grad_()
    out = roi_align(xr, rois, size, scale, ratio, 'avg', aligned)
    out.backward(grad)
    assert out.shape == (rois.shape[0], x.shape[1], *size) and out.dtype == dtype
    torch.testing.assert_close(out, want, **TOL[dtype])
    torch.testing.assert_close(xr.grad, want_grad, **TOL[dtype])
    # Both layouts of the kernel, forced: the same operations, so bitwise equal.
    for impl in IMPLS.values():
        fwd = _ext.roi_align_forward(x, rois, size[0], size[1], scale, ratio, aligned, impl)
        bwd = _ext.roi_align_backward(grad, rois, *x.shape, scale, ratio, aligned, impl)
        assert torch.equal(fwd, out.detach()), impl
        assert torch.equal(bwd, xr.grad), impl


@pytest.mark.parametrize('impl', list(IMPLS))
def test_many_channels_and_rois_float32(impl):
    """Channel blocks with tails (C = 40) and many RoIs per image, as a detector has them."""
    x, rois = make_case(3, n=2, c=40, h=32, w=24, k=300, stride=4, dtype=torch.float32)
    grad = torch.randn(rois.shape[0], 40, 7, 7, generator=torch.Generator().manual_seed(1))
    want, want_grad = mmcv_forward_backward(x, rois, grad, (7, 7), 0.25, 0, True)
    out = _ext.roi_align_forward(x, rois, 7, 7, 0.25, 0, True, IMPLS[impl])
    bwd = _ext.roi_align_backward(grad, rois, *x.shape, 0.25, 0, True, IMPLS[impl])
    torch.testing.assert_close(out, want, **TOL[torch.float32])
    torch.testing.assert_close(bwd, want_grad, **TOL[torch.float32])


def test_exact_borders_by_hand():
    """Samples exactly at -1, 0, H - 1 and H (aligned=False, scale 1, one sample per bin):
    beyond -1/H a sample counts 0, at -1..0 it takes pixel 0, at H - 1..H the last pixel."""
    x = torch.arange(12, dtype=torch.float64).reshape(1, 1, 3, 4) + 1
    # One bin, one sample at the RoI's centre (x1 + x2) / 2, (y1 + y2) / 2.
    cases = {(-1.0, -1.0): x[0, 0, 0, 0], (-1.5, 0.0): 0.0, (4.0, 3.0): x[0, 0, 2, 3],
             (4.5, 1.0): 0.0, (1.5, 0.5): (x[0, 0, 0, 1] + x[0, 0, 0, 2] + x[0, 0, 1, 1] +
                                           x[0, 0, 1, 2]) / 4}
    for (cx, cy), want in cases.items():
        rois = torch.tensor([[0.0, cx - 0.5, cy - 0.5, cx + 0.5, cy + 0.5]], dtype=torch.float64)
        out = roi_align(x, rois, 1, 1.0, 1, 'avg', False)
        torch.testing.assert_close(out.flatten(), torch.tensor([want], dtype=torch.float64))


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('ratio', [0, 2])
def test_gradcheck(aligned, ratio):
    x, rois = make_case(7, n=2, c=2, h=5, w=6, k=10, stride=2, dtype=torch.float64)
    x.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda inp: roi_align(inp, rois, (2, 3), 0.5, ratio, 'avg', aligned), (x,),
        eps=1e-6, atol=1e-8)


def test_deterministic_across_thread_counts():
    x, rois = make_case(4, n=2, c=24, h=20, w=20, k=200, dtype=torch.float32)
    grad = torch.randn(200, 24, 7, 7, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    results = []
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            results.append([(_ext.roi_align_forward(x, rois, 7, 7, 0.25, 0, True, impl),
                             _ext.roi_align_backward(grad, rois, *x.shape, 0.25, 0, True, impl))
                            for impl in IMPLS.values()])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for (f0, b0), (f1, b1) in zip(results[0], other):
            assert torch.equal(f0, f1) and torch.equal(b0, b1)


def test_empty_rois():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = roi_align(x, torch.zeros(0, 5), (7, 5), 0.25)
    assert out.shape == (0, 3, 7, 5)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    x, rois = make_case(5, dtype=torch.float32)
    xh = x.to(dtype).requires_grad_()
    out = roi_align(xh, rois.to(dtype), 7, 0.25, 0)
    assert out.dtype == dtype
    want = roi_align(x.to(dtype).float(), rois.to(dtype).float(), 7, 0.25, 0).to(dtype)
    assert torch.equal(out, want)
    out.float().sum().backward()
    assert xh.grad.dtype == dtype and xh.grad.shape == x.shape


def test_max_pool_goes_to_mmcv():
    mmcv_ops = pytest.importorskip('mmcv.ops')
    x, rois = make_case(6, dtype=torch.float32)
    torch.testing.assert_close(roi_align(x, rois, 7, 0.25, 2, 'max'),
                               mmcv_ops.roi_align(x, rois, 7, 0.25, 2, 'max', True))


def test_bad_inputs():
    x = torch.randn(2, 3, 8, 8)
    rois = torch.tensor([[0.0, 1, 1, 5, 5], [1, 2, 2, 6, 7]])
    with pytest.raises(ValueError, match='rois'):
        roi_align(x, rois[:, 1:], 7)
    for bad in (2.0, -1.0, float('nan')):
        with pytest.raises(ValueError, match='batch index'):
            roi_align(x, torch.tensor([[bad, 1, 1, 5, 5]]), 7)
    with pytest.raises(TypeError, match='floating-point'):
        roi_align(x.long(), rois, 7)
    with pytest.raises(TypeError, match='floating-point'):
        roi_align(x, rois.long(), 7)
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'):
        roi_align(x[0], rois, 7)
    with pytest.raises(ValueError, match='output_size'):
        roi_align(x, rois, 0)
    with pytest.raises(ValueError, match='output_size'):
        roi_align(x, rois, (7, 7, 7))
    with pytest.raises(ValueError, match='spatial_scale'):
        roi_align(x, rois, 7, 0.0)
    with pytest.raises(TypeError, match='sampling_ratio'):
        roi_align(x, rois, 7, 1.0, 2.0)
    with pytest.raises(ValueError, match='pool_mode'):
        roi_align(x, rois, 7, pool_mode='sum')
    with pytest.raises(TypeError, match='aligned'):
        roi_align(x, rois, 7, aligned=1)
    with pytest.raises(ValueError, match='x2 < x1'):
        roi_align(x, torch.tensor([[0.0, 5, 1, 1, 5]]), 7, aligned=True)
    with pytest.raises(ValueError, match='non-finite'):
        roi_align(x, torch.tensor([[0.0, 1, 1, float('inf'), 5]]), 7)
    # aligned=False raises degenerate RoIs to size 1, as mmcv does.
    assert roi_align(x, torch.tensor([[0.0, 5, 1, 1, 5]]), 7, aligned=False).shape == (1, 3, 7, 7)


def test_module_is_a_drop_in():
    mmcv_ops = pytest.importorskip('mmcv.ops')
    args = ((7, 5), 0.125, 2, 'avg', False)
    ours, theirs = RoIAlign(*args), mmcv_ops.RoIAlign(*args)
    assert repr(ours) == repr(theirs)
    for name in ('output_size', 'spatial_scale', 'sampling_ratio', 'pool_mode', 'aligned',
                 'use_torchvision'):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert RoIAlign(7).output_size == (7, 7)
    x, rois = make_case(8, h=7, w=6, stride=8, dtype=torch.float32)
    torch.testing.assert_close(ours(x, rois), theirs(x, rois), **TOL[torch.float32])


def test_replace_in_nested_modules():
    mmcv_ops = pytest.importorskip('mmcv.ops')
    model = nn.Module()
    model.layers = nn.ModuleList([mmcv_ops.RoIAlign(7, 1 / s, 0) for s in (4, 8)])
    model.mask = nn.Sequential(mmcv_ops.RoIAlign(14, 0.25, 2, aligned=False), nn.Identity())
    model.eval()
    before = [repr(m) for m in (*model.layers, model.mask[0])]
    assert replace_roi_align(model) == 3
    after = [m for m in (*model.layers, model.mask[0])]
    assert all(type(m) is RoIAlign and not m.training for m in after)
    assert [repr(m) for m in after] == before
    assert replace_roi_align(model) == 0


def test_replace_in_mmdet_faster_rcnn():
    pytest.importorskip('mmdet')
    pytest.importorskip('mmcv.ops')
    from mmcv.ops import RoIAlign as MMCVRoIAlign
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope

    from ssl_det.registry import MODELS
    cfg = Config.fromfile(FASTER_RCNN)
    torch.manual_seed(0)
    if DefaultScope.get_current_instance() is None:
        init_default_scope('ssl_det')
    with DefaultScope.overwrite_default_scope('ssl_det'):
        model = MODELS.build(cfg.model)
    model.eval()
    layers = model.roi_head.bbox_roi_extractor.roi_layers
    assert all(type(m) is MMCVRoIAlign for m in layers)

    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 64, 128 // s, 128 // s, generator=g) for s in (4, 8, 16, 32, 64)]
    xy = torch.rand(60, 2, generator=g) * 110
    wh = torch.rand(60, 2, generator=g) * 90 + 2
    rois = torch.cat([torch.randint(0, 2, (60, 1), generator=g).float(), xy, xy + wh], dim=1)

    def run():
        fs = [f.clone().requires_grad_() for f in feats]
        res = model.roi_head._bbox_forward(fs, rois)
        (res['cls_score'].sum() + res['bbox_pred'].square().sum()).backward()
        return res['cls_score'].detach(), res['bbox_pred'].detach(), [f.grad for f in fs[:4]]

    cls_a, reg_a, grads_a = run()
    assert replace_roi_align(model) == len(layers) == 4
    assert all(type(m) is RoIAlign for m in model.roi_head.bbox_roi_extractor.roi_layers)
    assert model.roi_head.bbox_roi_extractor.roi_layers[0].sampling_ratio == 2
    cls_b, reg_b, grads_b = run()
    torch.testing.assert_close(cls_b, cls_a, **TOL[torch.float32])
    torch.testing.assert_close(reg_b, reg_a, **TOL[torch.float32])
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(b, a, **TOL[torch.float32])
