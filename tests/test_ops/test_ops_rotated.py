"""ssl_det.ops.rotated_iou_bev / iou_3d against the reference, shapely, geometry facts, mmcv."""
import math

import pytest
import torch

from ssl_det.ops import bbox_overlaps, iou_3d, overlaps_bev, rotated_iou_bev
from ssl_det.ops import reference as ref

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def random_bev(n, seed, spread=20.0, dtype=torch.float64):
    """(n, 5) boxes (x, y, w, l, yaw) in a spread x spread square, sizes 0.5..6."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * spread
    wl = torch.rand(n, 2, generator=g, dtype=dtype) * 5.5 + 0.5
    yaw = (torch.rand(n, 1, generator=g, dtype=dtype) * 2 - 1) * math.pi
    return torch.cat([xy, wl, yaw], dim=1)


def to_3d(bev, z, dz):
    """(n, 7) boxes (x, y, z, dx, dy, dz, yaw) from (n, 5) footprints."""
    return torch.cat([bev[:, :2], z[:, None], bev[:, 2:4], dz[:, None], bev[:, 4:]], dim=1)


def random_3d(n, seed, spread=20.0):
    bev = random_bev(n, seed, spread)
    g = torch.Generator().manual_seed(seed + 1000)
    return to_3d(bev, torch.rand(n, generator=g, dtype=torch.float64) * 3,
                 torch.rand(n, generator=g, dtype=torch.float64) * 2 + 0.5)


def edge_case_pairs():
    """Aligned pairs (a[i], b[i]) of (x, y, w, l, yaw) and the IoU each must have."""
    sq45 = 2 * (math.sqrt(2) - 1)  # unit square intersected with itself rotated 45 degrees
    cases = [
        ([0, 0, 2, 4, 0.3], [0, 0, 2, 4, 0.3], 1.0),  # identical
        ([0, 0, 2, 4, 0], [10, 10, 2, 4, 1.0], 0.0),  # disjoint
        ([0, 0, 2, 2, 0], [2, 0, 2, 2, 0], 0.0),  # touching along an edge
        ([0, 0, 2, 2, 0], [2, 2, 2, 2, 0], 0.0),  # touching at a corner
        ([0, 0, 0, 2, 0], [0, 0, 2, 2, 0], 0.0),  # zero width
        ([0, 0, 0, 0, 0], [0, 0, 0, 0, 0], 0.0),  # two points
        ([0, 0, 4, 4, 0.2], [0, 0, 1, 2, 1.1], 2 / 16),  # nested
        ([1, 2, 2, 4, 0], [1, 2, 4, 2, math.pi / 2], 1.0),  # rotated 90 degrees, sizes swapped
        ([1, 2, 2, 4, 0.4], [1, 2, 2, 4, 0.4 + math.pi], 1.0),  # rotated 180 degrees
        ([1, 2, 2, 4, 0], [1, 2, 2, 4, 2 * math.pi], 1.0),  # rotated 360 degrees
        ([0, 0, 1, 1, 0], [0, 0, 1, 1, math.pi / 4], sq45 / (2 - sq45)),  # 45 degrees
        ([0, 0, 2, 2, 0], [1, 0, 2, 2, 0], 2 / 6),  # half overlap, yaw 0
        ([0, 0, 10, 1e-3, 0.1], [0, 0, 10, 1e-3, 0.1], 1.0),  # very thin, identical
        ([0, 0, 10, 1e-3, 0], [0, 0, 10, 1e-3, math.pi / 2], (1e-6) / (2e-2 - 1e-6)),  # thin cross
        ([3e4, 7e4, 4, 2, 0.5], [3e4, 7e4, 4, 2, 0.5], 1.0),  # huge coordinates
        ([9e4, 1e5, 2, 2, 0], [9e4 + 1, 1e5, 2, 2, 0], 2 / 6),  # huge, half overlap
    ]
    a = torch.tensor([c[0] for c in cases], dtype=torch.float64)
    b = torch.tensor([c[1] for c in cases], dtype=torch.float64)
    return a, b, torch.tensor([c[2] for c in cases], dtype=torch.float64)


def shapely_iou(p, q):
    from shapely.geometry import Polygon
    poly_p = Polygon(ref.box_corners(p[None])[0].tolist())
    poly_q = Polygon(ref.box_corners(q[None])[0].tolist())
    inter = poly_p.intersection(poly_q).area
    return inter / (poly_p.area + poly_q.area - inter)


@pytest.mark.parametrize('device', DEVICES)
def test_edge_cases_have_known_iou(device):
    a, b, expected = edge_case_pairs()
    got = rotated_iou_bev(a.to(device), b.to(device), aligned=True).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ref.rotated_iou_bev(a, b, aligned=True), expected, rtol=1e-9,
                               atol=1e-12)
    # Pairwise, both argument orders (symmetry), float64 and float32.
    pairwise = rotated_iou_bev(a.to(device), b.to(device)).cpu()
    torch.testing.assert_close(pairwise.diagonal(), expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(pairwise, rotated_iou_bev(b.to(device), a.to(device)).cpu().t(),
                               rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(pairwise, ref.rotated_iou_bev(a, b), rtol=1e-5, atol=1e-9)
    got32 = rotated_iou_bev(a.float().to(device), b.float().to(device), aligned=True).cpu()
    # float32 inputs are exact here except the huge coordinates, whose float32 rounding is
    # what the float64 reference sees too.
    expected32 = ref.rotated_iou_bev(a.float().double(), b.float().double(), aligned=True)
    torch.testing.assert_close(got32.double(), expected32, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('spread', [30.0, 4.0])  # scattered, and a dense cluster
def test_random_matches_reference(device, spread):
    a, b = random_bev(120, 0, spread), random_bev(90, 1, spread)
    expected = ref.rotated_iou_bev(a, b)
    if spread == 4.0:
        assert (expected > 0).float().mean() > 0.8  # the cluster really overlaps
    got = rotated_iou_bev(a.to(device), b.to(device)).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(rotated_iou_bev(b.to(device), a.to(device)).cpu().t(), got,
                               rtol=1e-9, atol=1e-12)  # symmetric
    got32 = rotated_iou_bev(a.float().to(device), b.float().to(device)).cpu()
    expected32 = ref.rotated_iou_bev(a.float().double(), b.float().double())
    torch.testing.assert_close(got32.double(), expected32, rtol=1e-5, atol=1e-7)
    aligned = rotated_iou_bev(a[:90].to(device), b.to(device), aligned=True).cpu()
    torch.testing.assert_close(aligned, expected[:90].diagonal(), rtol=1e-5, atol=1e-9)


def test_matches_shapely_on_random_pairs():
    pytest.importorskip('shapely', reason='shapely is not installed')
    a, b = random_bev(12, 2, spread=3.0), random_bev(12, 3, spread=3.0)
    got = rotated_iou_bev(a, b, aligned=True)
    expected = torch.tensor([shapely_iou(p, q) for p, q in zip(a, b)], dtype=torch.float64)
    assert (expected > 0).sum() >= 6
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    a3, b3 = random_3d(6, 4, spread=3.0), random_3d(6, 5, spread=3.0)
    for p, q, iou in zip(a3, b3, iou_3d(a3, b3, aligned=True)):
        from shapely.geometry import Polygon
        poly_p = Polygon(ref.box_corners(ref.bev_boxes(p[None]))[0].tolist())
        poly_q = Polygon(ref.box_corners(ref.bev_boxes(q[None]))[0].tolist())
        top = min(p[2] + p[5] / 2, q[2] + q[5] / 2)
        height = max(0.0, top - max(p[2] - p[5] / 2, q[2] - q[5] / 2))
        inter = poly_p.intersection(poly_q).area * height
        expected = inter / (poly_p.area * p[5] + poly_q.area * q[5] - inter)
        assert float(iou) == pytest.approx(float(expected), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize('device', DEVICES)
def test_yaw_zero_equals_axis_aligned_iou(device):
    bev = random_bev(60, 6, spread=10.0)
    bev[:, 4] = 0
    xyxy = torch.cat([bev[:, :2] - bev[:, 2:4] / 2, bev[:, :2] + bev[:, 2:4] / 2], dim=1)
    got = rotated_iou_bev(bev[:30].to(device), bev[30:].to(device)).cpu()
    torch.testing.assert_close(got, bbox_overlaps(xyxy[:30], xyxy[30:]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize('device', DEVICES)
def test_seven_columns_use_the_footprint(device):
    a, b = random_3d(40, 7, spread=8.0), random_3d(30, 8, spread=8.0)
    got = rotated_iou_bev(a.to(device), b.to(device)).cpu()
    torch.testing.assert_close(got, rotated_iou_bev(ref.bev_boxes(a), ref.bev_boxes(b)))
    mixed = rotated_iou_bev(a.to(device), ref.bev_boxes(b).to(device)).cpu()
    torch.testing.assert_close(mixed, got)


@pytest.mark.parametrize('device', DEVICES)
def test_iou_3d_matches_reference(device):
    a, b = random_3d(80, 9, spread=8.0), random_3d(70, 10, spread=8.0)
    expected = ref.iou_3d(a, b)
    assert (expected > 0).sum() > 50
    got = iou_3d(a.to(device), b.to(device)).cpu()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(iou_3d(a[:70].to(device), b.to(device), aligned=True).cpu(),
                               expected[:70].diagonal(), rtol=1e-5, atol=1e-9)
    got32 = iou_3d(a.float().to(device), b.float().to(device)).cpu()
    torch.testing.assert_close(got32.double(), ref.iou_3d(a.float().double(), b.float().double()),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('device', DEVICES)
def test_iou_3d_equals_bev_iou_when_heights_coincide(device):
    bev_a, bev_b = random_bev(50, 11, spread=8.0), random_bev(40, 12, spread=8.0)
    def same_heights(n):  # z and dz of n boxes
        full = torch.ones(n, dtype=torch.float64)
        return 1.5 * full, 2.0 * full
    a, b = to_3d(bev_a, *same_heights(50)), to_3d(bev_b, *same_heights(40))
    torch.testing.assert_close(iou_3d(a.to(device), b.to(device)).cpu(),
                               rotated_iou_bev(bev_a, bev_b), rtol=1e-9, atol=1e-12)


def test_iou_3d_height_cases():
    box = [0, 0, 1.0, 2, 3, 2.0, 0.4]
    a = torch.tensor([box] * 4, dtype=torch.float64)
    b = a.clone()
    b[1, 2] = 2.0  # shifted up by half its height: overlap 1 of 2 -> 1 / 3
    b[2, 2] = 3.0  # touching vertically
    b[3, 5] = 0.0  # zero height
    torch.testing.assert_close(iou_3d(a, b, aligned=True),
                               torch.tensor([1.0, 1 / 3, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(ref.iou_3d(a, b, aligned=True), iou_3d(a, b, aligned=True))


def test_empty_inputs():
    some, none = random_bev(3, 13), torch.zeros(0, 5, dtype=torch.float64)
    assert rotated_iou_bev(none, some).shape == (0, 3)
    assert rotated_iou_bev(some, none).shape == (3, 0)
    assert rotated_iou_bev(none, none, aligned=True).shape == (0,)
    assert iou_3d(torch.zeros(0, 7), torch.zeros(2, 7)).shape == (0, 2)


def test_non_contiguous_and_half_inputs():
    base = random_bev(40, 14, spread=5.0)
    strided = base[::2]
    assert not strided.is_contiguous()
    torch.testing.assert_close(rotated_iou_bev(strided, base),
                               rotated_iou_bev(strided.contiguous(), base))
    half = rotated_iou_bev(base.half(), base.half())
    assert half.dtype == torch.float16
    rounded = base.half().float()
    torch.testing.assert_close(half, rotated_iou_bev(rounded, rounded).half())


def test_bad_input_raises_clear_errors():
    good = random_bev(3, 15)
    with pytest.raises(ValueError,
                       match=r'`a` must have shape \(N, 5: x, y, w, l, yaw\) or \(N, 7'):
        rotated_iou_bev(torch.zeros(3, 6, dtype=torch.float64), good)
    with pytest.raises(ValueError, match=r'`a` must have shape \(N, 7: x, y, z, dx, dy, dz, yaw\)'):
        iou_3d(good, good)
    with pytest.raises(TypeError, match='`b` must be a floating-point'):
        rotated_iou_bev(good, torch.zeros(3, 5, dtype=torch.int32))
    with pytest.raises(TypeError, match='`a` is torch.float32 but `b` is torch.float64'):
        rotated_iou_bev(good.float(), good)
    with pytest.raises(ValueError, match='on cpu but `b` is on meta'):
        iou_3d(torch.zeros(2, 7), torch.zeros(2, 7, device='meta'))
    with pytest.raises(ValueError, match='aligned=True needs as many rows'):
        rotated_iou_bev(good, good[:1], aligned=True)


def test_matches_mmcv_box_iou_rotated():
    mmcv_ops = pytest.importorskip(
        'mmcv.ops', reason='mmcv is not importable here (e.g. a GPU host without OpenMMLab)')
    for spread in (20.0, 4.0):
        a, b = random_bev(60, 16, spread).float(), random_bev(50, 17, spread).float()
        expected = mmcv_ops.box_iou_rotated(a, b)
        assert (expected > 0).sum() > 20
        torch.testing.assert_close(rotated_iou_bev(a, b), expected, rtol=1e-4, atol=1e-5)


def test_overlaps_bev_says_which_boxes_touch_any_other():
    """Each box against all others: a footprint overlap (a rotated box reaching into an
    axis-aligned one; heights aside) counts, edges that only meet do not, and no others
    means none."""
    boxes = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0],
                          [5.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0],
                          [9.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0]])
    others = torch.tensor([[1.6, 1.6, 5.0, 2.0, 2.0, 1.0, math.pi / 4],  # reaches box 0
                           [7.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0]])  # edge to edge with 1 and 2
    assert overlaps_bev(boxes, others).tolist() == [True, False, False]
    assert overlaps_bev(boxes.float(), others).tolist() == [True, False, False]
    assert overlaps_bev(boxes, others[:0]).tolist() == [False] * 3
    assert overlaps_bev(boxes[:0], others).shape == (0,)
