"""ssl_det.ops.nms against mmcv's CPU kernel (the same kept indices, bit for bit), and
use_fast_cpu_nms: mmcv.ops.nms / batched_nms run it for float32 CPU tensors only."""
import importlib

import pytest
import torch

pytest.importorskip('mmcv.ops')  # a kernels-only host (SSL_DET_OPS_ONLY) has no mmcv to compare
from mmcv.ops import batched_nms  # noqa: E402
from mmcv.utils import ext_loader  # noqa: E402

from ssl_det.ops import nms, use_fast_cpu_nms  # noqa: E402

MMCV_EXT = ext_loader.load_ext('_ext', ['nms'])
MMCV_NMS = importlib.import_module('mmcv.ops.nms')
ssl_nms = importlib.import_module('ssl_det.ops.nms')  # the module (the package exports the function)


def mmcv_keep(boxes, scores, thr, offset=0):
    return MMCV_EXT.nms(boxes, scores, iou_threshold=float(thr), offset=offset)


def make_case(seed, n):
    """Boxes that cover the kernel's branches: integer corners (equal coordinates, exact
    IoU ties), tied scores, zero-size and inverted boxes, nested and disjoint ones."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 128
    wh = torch.rand(n, 2, generator=g) * 40
    if seed % 3 == 0:
        xy, wh = xy.round(), wh.round()  # many equal coordinates and repeated boxes
    if seed % 5 == 0 and n > 4:
        wh[:n // 4] *= -0.5  # inverted boxes: negative width or height
        wh[n // 4:n // 3] = 0  # zero-size
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(n, generator=g)
    if seed % 2 == 0:
        scores = (scores * 6).round() / 6  # ties: the sort's tie order decides
    return boxes, scores


@pytest.mark.parametrize('offset', [0, 1])
@pytest.mark.parametrize('thr', [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_equals_mmcv_kernel(thr, offset):
    for seed, n in enumerate([0, 1, 2, 7, 33, 300, 1000, 3000]):
        boxes, scores = make_case(seed, n)
        expected = mmcv_keep(boxes, scores, thr, offset)
        got = nms(boxes, scores, thr, offset)
        assert got.dtype == torch.int64
        assert torch.equal(got, expected), (seed, n, thr, offset)


def test_nms_suppresses_by_iou_and_keeps_score_order():
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.],
                          [0., 0., 10., 9.]])
    scores = torch.tensor([0.5, 0.9, 0.7, 0.8])
    # IoU(1, 0) = 81/119 = 0.68, IoU(3, 0) = 0.9, IoU(1, 3) = 72/118 = 0.61
    assert nms(boxes, scores, 0.65).tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.6).tolist() == [1, 2]
    assert nms(boxes, scores, 0.95).tolist() == [1, 3, 2, 0]


@pytest.mark.parametrize('kwargs,err,match', [
    (dict(boxes=torch.zeros(3, 5)), ValueError, r'shape \(N, 4'),
    (dict(boxes=torch.zeros(3, 4, dtype=torch.int64)), TypeError, 'floating-point'),
    (dict(boxes=torch.zeros(3, 4, dtype=torch.float64)), TypeError, 'float32'),
    (dict(scores=torch.zeros(2)), ValueError, r'shape \(3,\)'),
    (dict(offset=2), ValueError, 'offset'),
    (dict(iou_threshold='0.5'), TypeError, 'iou_threshold'),
])
def test_nms_rejects_bad_arguments(kwargs, err, match):
    args = dict(boxes=torch.zeros(3, 4), scores=torch.zeros(3), iou_threshold=0.5, offset=0)
    args.update(kwargs)
    if args['boxes'].dtype == torch.float64:
        args['scores'] = args['scores'].double()
    with pytest.raises(err, match=match):
        nms(**args)


@pytest.fixture
def fast_nms_installed():
    use_fast_cpu_nms(True)
    yield
    use_fast_cpu_nms(False)


def test_mmcv_nms_and_batched_nms_run_the_fast_kernel(fast_nms_installed, monkeypatch):
    """After use_fast_cpu_nms, mmcv's Python API (score threshold, max_num, batched_nms's
    class offsets) gives what mmcv's own kernel gives, and the kernel that ran is ssl_det's."""
    calls = []
    ext = ssl_nms._ext

    class Spy:
        def nms(self, *args):
            calls.append(args[0].shape[0])
            return ext.nms(*args)

    monkeypatch.setattr(ssl_nms, '_ext', Spy())
    boxes, scores = make_case(3, 2000)
    idxs = torch.randint(0, 4, (2000,), generator=torch.Generator().manual_seed(0))
    cfg = dict(type='nms', iou_threshold=0.7)
    dets, keep = batched_nms(boxes, scores, idxs, cfg)
    assert calls == [2000]
    dets2, inds = MMCV_NMS.nms(boxes, scores, 0.5, score_threshold=0.3, max_num=50)
    assert calls == [2000, int((scores > 0.3).sum())]
    use_fast_cpu_nms(False)
    ref_dets, ref_keep = batched_nms(boxes, scores, idxs, cfg)
    ref_dets2, ref_inds = MMCV_NMS.nms(boxes, scores, 0.5, score_threshold=0.3, max_num=50)
    assert len(calls) == 2  # mmcv's kernel again
    assert torch.equal(keep, ref_keep) and 100 < len(keep) < 2000
    assert torch.equal(dets, ref_dets)
    assert torch.equal(inds, ref_inds) and len(inds) == 50 and torch.equal(dets2, ref_dets2)


def test_use_fast_cpu_nms_installs_once_and_restores(fast_nms_installed):
    original = MMCV_NMS.ext_module._mmcv_ext
    assert use_fast_cpu_nms(True) is True
    assert MMCV_NMS.ext_module._mmcv_ext is original  # not wrapped twice
    assert MMCV_NMS.ext_module.softnms is original.softnms  # the rest is mmcv's
    assert use_fast_cpu_nms(False) is False
    assert MMCV_NMS.ext_module is original


def test_other_dtypes_still_reach_mmcv(fast_nms_installed):
    boxes, scores = make_case(1, 50)
    # float64: mmcv's kernel is float32-only and says so, as without ssl_det
    with pytest.raises(RuntimeError):
        MMCV_NMS.nms(boxes.double(), scores.double(), 0.5)
    # bfloat16 (CPU autocast): ssl_det.models' float32 path, then the fast kernel
    import ssl_det.models  # noqa: F401
    _, keep = MMCV_NMS.nms(boxes.bfloat16(), scores.bfloat16(), 0.5)
    assert torch.equal(keep, mmcv_keep(boxes.bfloat16().float(), scores.bfloat16().float(), 0.5))
