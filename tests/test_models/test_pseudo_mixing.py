"""Mixed pseudo labels: Mixup and Mosaic carry every pseudo box (and mask) onto its object."""
import random

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

from ssl_det.models.utils.pseudo_mixing import PseudoMixer, mixup, mosaic, place_instances


def object_view(shape, boxes, values, channels=3):
    """A (C, H, W) view, zero but for a filled rectangle per box (each its own value)."""
    image = torch.zeros((channels, ) + tuple(shape))
    for (x1, y1, x2, y2), value in zip(boxes, values):
        image[:, y1:y2, x1:x2] = value
    return image


def extent(image, value, tol=0.02):
    """The box ``(x1, y1, x2, y2)`` of the pixels of ``image`` (channel 0) near ``value``."""
    ys, xs = torch.nonzero((image[0] - value).abs() < tol, as_tuple=True)
    assert len(xs), f'no pixel of value {value}'
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def instances(boxes, labels, shape=None, masks=False):
    out = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                       labels=torch.tensor(labels, dtype=torch.long))
    if masks:
        h, w = shape
        array = np.zeros((len(boxes), h, w), np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            array[i, y1:y2, x1:x2] = 1
        out.masks = BitmapMasks(array, h, w)
    return out


def test_mixup_blends_both_views_and_keeps_their_boxes_in_place():
    dst = object_view((64, 64), [(8, 10, 20, 24), (56, 50, 63, 62)], [0.8, 0.6])
    src = object_view((48, 56), [(30, 5, 44, 17)], [0.4])
    mixed, shape, matrix = mixup(dst, (64, 64), src, ratio=0.5)
    assert shape == (64, 64)
    # both views overlap: each object at half its value, where it was
    assert extent(mixed, 0.4) == [8, 10, 20, 24]
    assert extent(mixed, 0.2) == [30, 5, 44, 17]
    # only dst reaches x >= 56, y >= 48: its object keeps its full value
    assert extent(mixed, 0.6) == [56, 50, 63, 62]
    placed, dropped = place_instances(instances([[30, 5, 44, 17]], [2]), matrix, shape, 2.0)
    assert dropped == 0
    torch.testing.assert_close(placed.bboxes, torch.tensor([[30., 5., 44., 17.]]))


def test_mixup_of_a_larger_cached_view_cuts_its_boxes_at_the_canvas():
    dst = torch.zeros(3, 32, 32)
    src = object_view((48, 48), [(20, 20, 40, 30), (36, 36, 46, 46)], [1.0, 1.0])
    mixed, shape, matrix = mixup(dst, (32, 32), src)
    assert shape == (32, 32)
    placed, dropped = place_instances(instances([[20, 20, 40, 30], [36, 36, 46, 46]], [0, 1]),
                                      matrix, shape, 2.0)
    assert dropped == 1  # wholly off the canvas
    torch.testing.assert_close(placed.bboxes, torch.tensor([[20., 20., 32., 30.]]))


def test_mosaic_puts_each_view_and_its_box_on_the_same_pixels():
    shapes = [(40, 60), (50, 30), (30, 40), (60, 52)]
    boxes = [(10, 8, 34, 28), (4, 20, 24, 44), (8, 4, 36, 20), (12, 16, 44, 52)]
    values = [0.9, 0.7, 0.5, 0.3]
    views = [object_view(s, [b], [v]) for s, b, v in zip(shapes, boxes, values)]
    scales = [0.5, 1.0, 0.75, 0.5]
    canvas, shape, matrices = mosaic(views, scales, size_divisor=32)
    assert canvas.shape[-2] % 32 == 0 and canvas.shape[-1] % 32 == 0
    assert canvas.shape[-2] >= shape[0] and canvas.shape[-1] >= shape[1]
    corners = []
    for box, value, matrix in zip(boxes, values, matrices):
        placed, _ = place_instances(instances([box], [0]), matrix, shape, 1.0)
        got = placed.bboxes[0].tolist()
        # the box lands on the object's own pixels (found in the canvas, not computed)
        found = extent(canvas, value, tol=0.06)
        assert np.allclose(got, found, atol=1.0), (got, found)
        corners.append(got)
    # the four views sit in four different quadrants around one centre
    cx = (corners[0][2] + corners[1][0]) / 2
    assert corners[0][0] < corners[1][0] and corners[2][0] < corners[3][0]
    assert corners[0][1] < corners[2][1] and corners[1][1] < corners[3][1]
    assert cx > 0


def test_mosaic_masks_cover_their_objects():
    shapes = [(32, 32), (32, 40), (40, 32), (24, 24)]
    boxes = [(4, 6, 20, 18), (10, 2, 30, 22), (2, 12, 22, 34), (6, 6, 18, 20)]
    values = [0.9, 0.7, 0.5, 0.3]
    views = [object_view(s, [b], [v]) for s, b, v in zip(shapes, boxes, values)]
    canvas, shape, matrices = mosaic(views, [0.75, 0.5, 1.0, 1.0])
    for s, box, value, matrix in zip(shapes, boxes, values, matrices):
        placed, _ = place_instances(instances([box], [0], s, masks=True), matrix, shape, 1.0)
        mask = torch.from_numpy(placed.masks.masks[0].astype(bool))
        obj = (canvas[0, :shape[0], :shape[1]] - value).abs() < 0.06
        iou = (mask & obj).sum() / (mask | obj).sum()
        assert iou > 0.8, (value, float(iou))


def test_mosaic_boxes_follow_each_axis_own_rounded_resize():
    """A view's size is rounded per axis, so its x and y resize factors differ (41 rows at
    0.5 become 20, 60 columns 30): a box around the whole view must cover exactly the
    pixels the view fills in the canvas, on both axes."""
    shapes = [(41, 60), (33, 30), (30, 40), (25, 52)]
    values = [0.9, 0.7, 0.5, 0.3]
    views = [torch.full((3, ) + s, v) for s, v in zip(shapes, values)]
    canvas, shape, matrices = mosaic(views, [0.5] * 4, size_divisor=32)
    for (h, w), value, matrix in zip(shapes, values, matrices):
        placed, dropped = place_instances(instances([[0, 0, w, h]], [0]), matrix, shape, 1.0)
        assert dropped == 0
        found = extent(canvas, value, tol=1e-3)
        torch.testing.assert_close(placed.bboxes[0], torch.tensor(found, dtype=torch.float32))


def strong_batch(step, size=48):
    """Two strong views with one object each (value by step and image), its pseudo box and
    an ignored box."""
    images, samples = [], []
    for i in range(2):
        value = 0.1 + 0.2 * i + 0.05 * step
        x = 4 + 6 * step + 10 * i
        box = (x, 8, x + 12, 22)
        images.append(object_view((size, size), [box], [value]))
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), pad_shape=(size, size),
                                             batch_input_shape=(size, size), img_id=step * 2 + i))
        sample.gt_instances = instances([box], [i])
        sample.ignored_instances = instances([[26 + 2 * step + i, 30, 36 + 2 * step + i, 40]],
                                             [3])
        samples.append(sample)
    return torch.stack(images), samples


def test_mixer_waits_for_a_full_cache_then_mixes_with_labels_on_their_objects():
    random.seed(0)
    mixer = PseudoMixer(cache_size=4, mosaic_scale=(0.5, 1.0))
    assert mixer.mixed_batches(*strong_batch(0)) == []
    assert mixer.mixed_batches(*strong_batch(1)) == []  # 2 of 4 cached before this call
    assert len(mixer.cache) == 4
    cached_ignored = [v[2].bboxes[0].tolist() for v in mixer.cache]
    inputs, samples = strong_batch(2)
    batches = dict((name, (x, s)) for name, x, s in mixer.mixed_batches(inputs, samples))
    assert set(batches) == {'mixup', 'mosaic'}

    mixed, mixed_samples = batches['mixup']
    assert mixed.shape == inputs.shape
    for image, sample, own in zip(mixed, mixed_samples, samples):
        gt = sample.gt_instances
        assert len(gt) == 2  # its own pseudo box and the cached view's
        torch.testing.assert_close(gt.bboxes[0], own.gt_instances.bboxes[0])
        for box in gt.bboxes.long().tolist():
            x1, y1, x2, y2 = box
            assert image[0, y1:y2, x1:x2].min() > 0.04  # an object under every box
        ignored = sample.ignored_instances.bboxes.tolist()
        assert ignored[0] == own.ignored_instances.bboxes[0].tolist()
        assert ignored[1] in cached_ignored  # and the cached view's, where it was
        assert sample.batch_input_shape == tuple(mixed.shape[-2:])

    canvas, mosaic_samples = batches['mosaic']
    assert canvas.shape[0] == 1
    gt = mosaic_samples[0].gt_instances
    assert len(gt) == 4 and len(mosaic_samples[0].ignored_instances) == 4
    for x1, y1, x2, y2 in gt.bboxes.round().long().tolist():
        inner = canvas[0, 0, y1 + 1:y2 - 1, x1 + 1:x2 - 1]
        assert inner.numel() and inner.min() > 0.05
    h, w = mosaic_samples[0].img_shape
    assert mosaic_samples[0].batch_input_shape == tuple(canvas.shape[-2:])
    assert h <= canvas.shape[-2] and w <= canvas.shape[-1]
    # the batch just mixed is cached now: the oldest views left
    assert len(mixer.cache) == 4
    assert torch.equal(mixer.cache[-1][0], inputs[1])


def test_mixer_arguments_are_checked():
    with pytest.raises(ValueError, match='4 cached views'):
        PseudoMixer(cache_size=3)
    with pytest.raises(ValueError, match='mixup_ratio'):
        PseudoMixer(mixup_ratio=1.0)
    with pytest.raises(ValueError, match='mosaic_scale'):
        PseudoMixer(mosaic_scale=(1.0, 0.5))
