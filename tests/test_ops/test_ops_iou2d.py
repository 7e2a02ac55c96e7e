"""ssl_det.ops.bbox_overlaps against its pure-torch reference, hand-computed values, mmcv."""
import pytest
import torch

from ssl_det.ops import bbox_overlaps
from ssl_det.ops import reference as ref

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
MODES = ['iou', 'iof', 'giou']


def random_boxes(n, seed, scale=100.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * scale
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * scale / 3 + 0.5
    return torch.cat([xy, xy + wh], dim=1)


def edge_case_boxes(dtype=torch.float64):
    """Pairs (a[i], b[i]) covering the corner cases; also used pairwise."""
    a = torch.tensor([
        [0, 0, 10, 10],  # identical
        [0, 0, 10, 10],  # disjoint
        [0, 0, 10, 10],  # touching along an edge
        [0, 0, 10, 10],  # touching at a corner
        [3, 3, 3, 3],  # zero area (a point) inside b
        [0, 0, 0, 10],  # zero width (a segment)
        [0, 0, 100, 100],  # b nested inside
        [0, 0, 1000, 0.01],  # very thin
        [1e4, 2e4, 1e5, 9e4],  # huge coordinates
        [5e4, 5e4, 5e4 + 3, 5e4 + 4],  # small box far from the origin
    ], dtype=dtype)
    b = torch.tensor([
        [0, 0, 10, 10],
        [20, 20, 30, 30],
        [10, 0, 20, 10],
        [10, 10, 20, 20],
        [0, 0, 10, 10],
        [0, 0, 10, 10],
        [25, 25, 50, 75],
        [500, -1, 1500, 1],
        [2e4, 1e4, 9e4, 1e5],
        [5e4 + 1, 5e4 + 1, 5e4 + 4, 5e4 + 5],
    ], dtype=dtype)
    return a, b


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_random_matches_reference(device, mode, dtype):
    # 300 x 500 spans several row chunks of the CPU loop.
    a, b = random_boxes(300, 0).to(device, dtype), random_boxes(500, 1).to(device, dtype)
    expected = ref.bbox_overlaps(a.cpu().double(), b.cpu().double(), mode)
    got = bbox_overlaps(a, b, mode)
    assert got.shape == (300, 500) and got.dtype == dtype and got.device == a.device
    torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-5, atol=1e-6)
    aligned = bbox_overlaps(a[:200], b[:200], mode, aligned=True)
    expected_aligned = ref.bbox_overlaps(a[:200].cpu().double(), b[:200].cpu().double(), mode,
                                         aligned=True)
    torch.testing.assert_close(aligned.cpu().double(), expected_aligned, rtol=1e-5, atol=1e-6)
    if dtype == torch.float64:  # same formula, same dtype: agreement to rounding
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('mode', MODES)
def test_edge_cases_match_reference(device, mode):
    a, b = edge_case_boxes()
    expected = ref.bbox_overlaps(a, b, mode, aligned=True)
    got = bbox_overlaps(a.to(device), b.to(device), mode, aligned=True).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    pairwise = bbox_overlaps(a.to(device), b.to(device), mode).cpu()
    torch.testing.assert_close(pairwise, ref.bbox_overlaps(a, b, mode), rtol=1e-12, atol=1e-12)
    # float32 against the float64 reference, including the 1e4..1e5 coordinates.
    got32 = bbox_overlaps(a.float().to(device), b.float().to(device), mode, aligned=True).cpu()
    torch.testing.assert_close(got32.double(), expected, rtol=1e-5, atol=1e-6)


def test_hand_computed_values():
    a, b = edge_case_boxes()
    iou = bbox_overlaps(a, b, 'iou', aligned=True)
    assert iou[0] == 1.0  # identical
    assert iou[1] == 0.0 and iou[2] == 0.0 and iou[3] == 0.0  # disjoint, touching
    assert iou[4] == 0.0 and iou[5] == 0.0  # zero area
    assert iou[6] == pytest.approx(25 * 50 / 100 ** 2)  # nested: area(b) / area(a)
    assert iou[7] == pytest.approx(500 * 0.01 / (1000 * 0.01 + 1000 * 2 - 500 * 0.01))
    assert iou[9] == pytest.approx(2 * 3 / (12 + 12 - 6))
    iof = bbox_overlaps(a, b, 'iof', aligned=True)
    assert iof[6] == pytest.approx(25 * 50 / 100 ** 2) and iof[9] == pytest.approx(6 / 12)
    giou = bbox_overlaps(a, b, 'giou', aligned=True)
    assert giou[0] == 1.0
    assert giou[1] == pytest.approx(0 - (900 - 200) / 900)  # enclosing box 30 x 30
    assert giou[2] == pytest.approx(0.0, abs=1e-15)  # enclosing box == union
    two = torch.tensor([[0., 0, 10, 10], [5, 5, 15, 15]])
    torch.testing.assert_close(bbox_overlaps(two[:1], two[1:]), torch.tensor([[25 / 175]]))
    torch.testing.assert_close(bbox_overlaps(two[:1], two[1:], 'giou'),
                               torch.tensor([[25 / 175 - 50 / 225]]))


@pytest.mark.parametrize('device', DEVICES)
def test_empty_inputs(device):
    some = random_boxes(3, 0).to(device)
    none = torch.zeros(0, 4, dtype=torch.float64, device=device)
    assert bbox_overlaps(none, some).shape == (0, 3)
    assert bbox_overlaps(some, none).shape == (3, 0)
    assert bbox_overlaps(none, none).shape == (0, 0)
    assert bbox_overlaps(none, none, aligned=True).shape == (0,)
    a = none.clone().requires_grad_()
    bbox_overlaps(a, some, 'giou').sum().backward()
    assert a.grad.shape == (0, 4)


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('aligned', [False, True])
def test_gradcheck(mode, aligned):
    a = random_boxes(5, 2).requires_grad_()
    b = random_boxes(5 if aligned else 7, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, q: bbox_overlaps(p, q, mode, aligned), (a, b))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('mode', MODES)
def test_gradient_matches_reference_autograd(device, mode):
    # Edge cases include ties (identical boxes, shared edges), where the gradient is split
    # evenly between min/max inputs as torch.minimum/maximum do.
    a0, b0 = edge_case_boxes()
    a0, b0 = torch.cat([a0, random_boxes(20, 4)]), torch.cat([b0, random_boxes(20, 5)])
    weights = torch.rand(a0.shape[0], b0.shape[0], generator=torch.Generator().manual_seed(6),
                         dtype=torch.float64)
    for aligned in (False, True):
        grads = []
        for fn, dev in ((bbox_overlaps, device), (ref.bbox_overlaps, 'cpu')):
            a, b = a0.clone().to(dev).requires_grad_(), b0.clone().to(dev).requires_grad_()
            w = weights.diagonal() if aligned else weights
            (fn(a, b, mode, aligned) * w.to(dev)).sum().backward()
            grads.append((a.grad.cpu(), b.grad.cpu()))
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-9)


def test_gradient_only_for_inputs_that_need_it():
    a, b = random_boxes(4, 7).requires_grad_(), random_boxes(3, 8)
    bbox_overlaps(a, b).sum().backward()
    assert a.grad is not None and b.grad is None


def test_non_contiguous_inputs_are_made_contiguous():
    base = random_boxes(40, 9)
    a = base[::2]  # strided rows
    b = torch.stack([base[:, 0], base[:, 1], base[:, 2], base[:, 3]], dim=0).t()  # transposed
    assert not a.is_contiguous() and not b.is_contiguous()
    torch.testing.assert_close(bbox_overlaps(a, b), bbox_overlaps(a.contiguous(), b.contiguous()))


def test_half_on_cpu_is_computed_in_float():
    a, b = random_boxes(6, 10).half(), random_boxes(5, 11).half()
    got = bbox_overlaps(a, b)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got, ref.bbox_overlaps(a.float(), b.float()).half())


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('mode', MODES)
def test_half_on_cuda(mode):
    a, b = random_boxes(100, 12), random_boxes(80, 13)
    got = bbox_overlaps(a.cuda().half(), b.cuda().half(), mode)
    assert got.dtype == torch.float16
    expected = ref.bbox_overlaps(a.half().double(), b.half().double(), mode)
    torch.testing.assert_close(got.cpu().double(), expected, rtol=2e-3, atol=2e-3)


def test_bad_input_raises_clear_errors():
    good = random_boxes(3, 0)
    with pytest.raises(ValueError, match=r'`a` must have shape \(N, 4'):
        bbox_overlaps(torch.zeros(3, 5, dtype=torch.float64), good)
    with pytest.raises(ValueError, match=r'`b` must have shape \(N, 4'):
        bbox_overlaps(good, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(TypeError, match='`a` must be a floating-point'):
        bbox_overlaps(torch.zeros(3, 4, dtype=torch.long), good)
    with pytest.raises(TypeError, match='`b` must be a torch.Tensor'):
        bbox_overlaps(good, [[0, 0, 1, 1]])
    with pytest.raises(TypeError, match='float32 but `b` is torch.float64'):
        bbox_overlaps(good.float(), good)
    with pytest.raises(ValueError, match='on cpu but `b` is on meta'):
        bbox_overlaps(good, torch.empty(3, 4, dtype=torch.float64, device='meta'))
    with pytest.raises(ValueError, match="`mode` must be one of 'iou', 'iof', 'giou', got 'dice'"):
        bbox_overlaps(good, good, mode='dice')
    with pytest.raises(ValueError, match='aligned=True needs as many rows'):
        bbox_overlaps(good, good[:2], aligned=True)
    with pytest.raises(ValueError, match='`eps` must be >= 0'):
        bbox_overlaps(good, good, eps=-1.0)


def test_matches_mmcv_bbox_overlaps():
    mmcv_ops = pytest.importorskip(
        'mmcv.ops', reason='mmcv is not importable here (e.g. a GPU host without OpenMMLab)')
    a, b = random_boxes(50, 14).float(), random_boxes(60, 15).float()
    for mode in ('iou', 'iof'):  # mmcv has no giou
        torch.testing.assert_close(bbox_overlaps(a, b, mode), mmcv_ops.bbox_overlaps(a, b, mode))
        torch.testing.assert_close(bbox_overlaps(a, b[:50], mode, aligned=True),
                                   mmcv_ops.bbox_overlaps(a, b[:50], mode, aligned=True))
