"""ssl_det.ops.box_jitter / jitter_uncertainty against the reference, by hand, and mmdet."""
import math
import types

import pytest
import torch

from ssl_det.ops import box_jitter, box_jitter_with_noise, jitter_noise, jitter_uncertainty
from ssl_det.ops import reference as ref
from ssl_det.ops._ext_loader import load_ext

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def random_boxes(n, seed, extra_cols=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 500
    wh = torch.rand(n, 2, generator=g) * 80 + 0.2  # some sizes below 1 (clamped to 1)
    extra = torch.rand(n, extra_cols, generator=g)
    return torch.cat([xy, xy + wh, extra], dim=1).to(dtype)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_jitter_is_reproducible_and_matches_reference(device, dtype):
    boxes = random_boxes(37, 0, extra_cols=1, dtype=dtype)
    boxes[::3, :4] += 1e5  # huge coordinates
    boxes[1, 2:4] = boxes[1, :2]  # a zero-area box (its size clamps to 1)
    boxes = boxes.to(device)
    out = box_jitter(boxes, 6, 0.06, generator=torch.Generator(device).manual_seed(1))
    again = box_jitter(boxes, 6, 0.06, generator=torch.Generator(device).manual_seed(1))
    expected = ref.box_jitter(boxes, 6, 0.06, generator=torch.Generator(device).manual_seed(1))
    assert out.shape == (37 * 6, 5) and out.dtype == dtype
    assert torch.equal(out, again)
    # Same draw, same operations in the same order: bitwise equal.
    assert torch.equal(out, expected)
    other = box_jitter(boxes, 6, 0.06, generator=torch.Generator(device).manual_seed(2))
    assert not torch.equal(out, other)


@pytest.mark.parametrize('device', DEVICES)
def test_jitter_layout_and_maths_by_hand(device):
    boxes = torch.tensor([[0., 0, 10, 20, 0.9], [5, 5, 5.5, 5.2, 0.3]], device=device)
    times = 3
    noise = torch.arange(times * 2 * 4, dtype=torch.float32, device=device).reshape(times, 2, 4)
    out = box_jitter_with_noise(boxes, noise, 0.5).cpu()
    for n, (w, h) in enumerate([(10.0, 20.0), (1.0, 1.0)]):  # box 1's size is clamped to 1
        step = torch.tensor([w, h, w, h]) * 0.5
        for t in range(times):
            row = out[n * times + t]  # box-major
            torch.testing.assert_close(row[:4], boxes[n, :4].cpu() + noise[t, n].cpu() * step)
            assert row[4] == boxes[n, 4].cpu()  # extra column copied


def test_jitter_matches_mmdet_aug_box():
    soft_teacher = pytest.importorskip(
        'mmdet.models.detectors.soft_teacher',
        reason='mmdet is not importable here (e.g. a GPU host without OpenMMLab)')
    boxes = random_boxes(23, 3)
    sample = types.SimpleNamespace(gt_instances=types.SimpleNamespace(bboxes=boxes))
    torch.manual_seed(123)
    theirs = soft_teacher.SoftTeacher.aug_box([sample], 10, 0.06)[0]  # (times, N, 4)
    torch.manual_seed(123)
    ours = box_jitter(boxes, 10, 0.06)  # the default generator, as mmdet
    assert theirs.shape == (10, 23, 4)
    assert torch.equal(ours.view(23, 10, 4), theirs.transpose(0, 1))


def test_jitter_noise_is_mmdet_draw():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    noise = jitter_noise(torch.zeros(7, 4), 3, generator=g1)
    assert noise.shape == (3, 7, 4) and noise.dtype == torch.float32
    assert torch.equal(noise, torch.randn(3, 7, 4, generator=g2))


def test_jitter_edge_cases():
    empty = box_jitter(torch.zeros(0, 4), 5, 0.1)
    assert empty.shape == (0, 4)
    boxes = random_boxes(4, 4)
    torch.testing.assert_close(box_jitter(boxes, 1, 0.0), boxes)  # scale 0: unchanged
    half = box_jitter_with_noise(boxes.half(), torch.ones(2, 4, 4), 0.1)
    assert half.dtype == torch.float16
    expected = ref.box_jitter_with_noise(boxes.half(), torch.ones(2, 4, 4), 0.1)
    torch.testing.assert_close(half, expected)
    strided = random_boxes(8, 5)[::2]
    noise = torch.randn(3, 4, 4)
    torch.testing.assert_close(box_jitter_with_noise(strided, noise, 0.1),
                               box_jitter_with_noise(strided.contiguous(), noise, 0.1))


def test_jitter_bad_input():
    boxes = random_boxes(3, 6)
    with pytest.raises(ValueError, match=r'`boxes` must have shape \(N, K>=4'):
        box_jitter(torch.zeros(3, 3), 2, 0.1)
    with pytest.raises(ValueError, match='`times` must be >= 1'):
        box_jitter(boxes, 0, 0.1)
    with pytest.raises(TypeError, match='`times` must be an int'):
        box_jitter(boxes, 2.0, 0.1)
    with pytest.raises(ValueError, match='`scale` must be >= 0'):
        box_jitter(boxes, 2, -0.1)
    with pytest.raises(ValueError, match=r'`noise` must have shape \(times, N=3, 4\)'):
        box_jitter_with_noise(boxes, torch.zeros(2, 4, 4), 0.1)
    with pytest.raises(TypeError, match='`noise` must be a floating-point'):
        box_jitter_with_noise(boxes, torch.zeros(2, 3, 4, dtype=torch.long), 0.1)


def refined_boxes(n, times, channels, seed, dtype=torch.float32):
    """Box-major (n * times, 4 * channels) refinements scattered around random boxes."""
    g = torch.Generator().manual_seed(seed)
    base = random_boxes(n * channels, seed)
    base[::5] += 3e4  # huge coordinates
    base = base.reshape(n, 1, 4 * channels)
    noise = torch.randn(n, times, 4 * channels, generator=g) * 3
    return (base + noise).reshape(n * times, 4 * channels).to(dtype)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('channels', [1, 7])
def test_uncertainty_matches_reference(device, dtype, channels):
    n, times = 300, 10
    refined = refined_boxes(n, times, channels, 7, dtype)
    labels = torch.randint(0, channels, (n,), generator=torch.Generator().manual_seed(8))
    expected = ref.jitter_uncertainty(refined.double(), labels, times)
    got = jitter_uncertainty(refined.to(device), labels.to(device), times)
    assert got.shape == (n,) and got.dtype == dtype
    torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-5, atol=1e-7)
    # (N, times, 4C) input and, class-agnostic, no labels at all.
    got3 = jitter_uncertainty(refined.reshape(n, times, -1).to(device), labels.to(device), times)
    torch.testing.assert_close(got3, got)
    if channels == 1:
        torch.testing.assert_close(jitter_uncertainty(refined.to(device), None, times), got)


def test_uncertainty_by_hand():
    # Box 0: x1 is 0 or 2 (unbiased std sqrt(2)), mean box (1, 0, 10, 20): w 9, h 20.
    # Box 1: mean box 0.5 wide and 0.2 high, so both sizes clamp to 1; only y2 varies.
    refined = torch.tensor([[0., 0, 10, 20], [2, 0, 10, 20],
                            [0, 0, 0.5, 0.1], [0, 0, 0.5, 0.3]])
    got = jitter_uncertainty(refined, None, 2)
    expected = torch.tensor([2 ** 0.5 / 9 / 4, (0.02 ** 0.5) / 1 / 4])
    torch.testing.assert_close(got, expected)
    # Class-specific: the label picks the channel; the other channel's spread is ignored.
    two_class = torch.cat([refined * 100, refined], dim=1)
    torch.testing.assert_close(jitter_uncertainty(two_class, torch.tensor([1, 1]), 2), expected)


def test_uncertainty_of_jittered_boxes_tracks_the_scale():
    # With an identity "refinement" each coordinate's std estimates scale * size, and the
    # unbiased sample std of 10 normals averages c4(10) * sigma.
    boxes = random_boxes(2000, 9) * 4 + torch.tensor([0, 0, 50, 50])  # sizes >= 50: no clamp
    jittered = box_jitter(boxes, 10, 0.05, generator=torch.Generator().manual_seed(10))
    unc = jitter_uncertainty(jittered, None, 10)
    c4 = math.sqrt(2 / 9) * math.exp(math.lgamma(5) - math.lgamma(4.5))
    assert unc.mean().item() == pytest.approx(0.05 * c4, rel=0.02)


def test_uncertainty_empty_and_half():
    assert jitter_uncertainty(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long), 4).shape == (0,)
    refined = refined_boxes(20, 4, 1, 11)
    half = jitter_uncertainty(refined.half(), None, 4)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half, ref.jitter_uncertainty(refined.half().float(), None, 4).half())


def test_jitter_and_uncertainty_match_mmdet_compute_uncertainty_with_aug():
    """mmdet's own SoftTeacher.compute_uncertainty_with_aug, run on a stub teacher whose RoI
    head 'refines' each jittered box by a fixed per-row function, against our two ops."""
    soft_teacher = pytest.importorskip(
        'mmdet.models.detectors.soft_teacher',
        reason='mmdet is not importable here (e.g. a GPU host without OpenMMLab)')
    times, scale, classes = 5, 0.06, 3
    boxes = [random_boxes(7, 20), random_boxes(4, 21)]
    labels = [torch.tensor([0, 2, 1, 1, 0, 2, 2]), torch.tensor([1, 0, 2, 1])]

    def refine(rois):  # (R, 4) -> (R, 4C): class c scales and shifts the box differently
        return torch.cat([rois * (1 + 0.01 * c) + c for c in range(classes)], dim=1)

    def predict(x, rpn_results_list, batch_data_samples, rescale=False):
        return [types.SimpleNamespace(bboxes=refine(r.bboxes)) for r in rpn_results_list]

    stub = types.SimpleNamespace(
        aug_box=soft_teacher.SoftTeacher.aug_box,
        semi_train_cfg=types.SimpleNamespace(jitter_times=times, jitter_scale=scale),
        teacher=types.SimpleNamespace(
            roi_head=types.SimpleNamespace(predict=predict, test_cfg=None),
            test_cfg=types.SimpleNamespace(rcnn=None)))
    samples = [types.SimpleNamespace(gt_instances=types.SimpleNamespace(bboxes=b, labels=l))
               for b, l in zip(boxes, labels)]
    torch.manual_seed(7)
    theirs = soft_teacher.SoftTeacher.compute_uncertainty_with_aug(stub, None, samples)
    torch.manual_seed(7)  # mmdet draws (times, n_i, 4) per image, in image order
    noise = torch.cat([torch.randn(times, b.shape[0], 4) for b in boxes], dim=1)
    jittered = box_jitter_with_noise(torch.cat(boxes), noise, scale)  # all images at once
    ours = jitter_uncertainty(refine(jittered), torch.cat(labels), times)
    torch.testing.assert_close(ours, torch.cat(theirs), rtol=1e-5, atol=1e-7)


def test_uncertainty_bad_input():
    refined = refined_boxes(5, 4, 3, 12)
    labels = torch.tensor([0, 1, 2, 1, 0])
    with pytest.raises(ValueError, match='`labels` is required'):
        jitter_uncertainty(refined, None, 4)
    with pytest.raises(ValueError, match=r'`labels` must lie in \[0, 3\), got values in \[0, 3\]'):
        jitter_uncertainty(refined, torch.tensor([0, 1, 3, 1, 0]), 4)
    with pytest.raises(ValueError, match=r'`labels` must have shape \(N=5,\)'):
        jitter_uncertainty(refined, labels[:4], 4)
    with pytest.raises(TypeError, match='`labels` must be an integer'):
        jitter_uncertainty(refined, labels.float(), 4)
    with pytest.raises(ValueError, match='`times` must be >= 2'):
        jitter_uncertainty(refined, labels, 1)
    with pytest.raises(ValueError, match=r'`refined` must have shape \(N \* times, 4C\)'):
        jitter_uncertainty(refined, labels, 3)  # 20 rows are not a multiple of 3
    with pytest.raises(ValueError, match=r'`refined` must have shape'):
        jitter_uncertainty(torch.zeros(8, 6), None, 2)
    with pytest.raises(ValueError, match='must have times=2 in dim 1'):
        jitter_uncertainty(refined.reshape(5, 4, 12), labels, 2)
    with pytest.raises(TypeError, match='`refined` must be a floating-point'):
        jitter_uncertainty(refined.long(), labels, 4)


def test_missing_extension_says_how_to_rebuild():
    with pytest.raises(ImportError) as info:
        load_ext('ssl_det._no_such_extension')
    message = str(info.value)
    assert 'bash tools/setup_env.sh' in message
    assert 'pip install --no-build-isolation -e .' in message
