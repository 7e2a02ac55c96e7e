"""AlbuPhotometric changes pixels only, and repeats itself under a seed."""
import numpy as np
import pytest
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks

from ssl_det.datasets.transforms import AlbuPhotometric
from ssl_det.registry import TRANSFORMS

ALWAYS = dict(color_jitter_prob=1.0, blur_prob=1.0, noise_prob=1.0, jpeg_prob=1.0)
SATURATION_SEED = 5  # a seed whose saturation factor is below 1 (desaturates)


def _results(seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    masks = np.zeros((1, 48, 64), dtype=np.uint8)
    masks[0, 5:20, 10:30] = 1
    return dict(img=img, img_shape=(48, 64),
                gt_bboxes=HorizontalBoxes(np.array([[10., 5., 30., 20.]], np.float32)),
                gt_masks=BitmapMasks(masks, 48, 64),
                homography_matrix=np.array([[-1, 0, 64], [0, 1, 0], [0, 0, 1]], np.float32))


def test_changes_image_only():
    transform = TRANSFORMS.build(dict(type='ssl_det.AlbuPhotometric', seed=0, **ALWAYS))
    assert isinstance(transform, AlbuPhotometric)
    results = _results()
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in results.items()}
    boxes, masks = results['gt_bboxes'].tensor.clone(), results['gt_masks'].masks.copy()
    out = transform(results)
    assert out['img'].shape == (48, 64, 3) and out['img'].dtype == np.uint8
    assert np.abs(out['img'].astype(int) - before['img'].astype(int)).mean() > 2
    assert out['gt_bboxes'].tensor.equal(boxes)
    assert np.array_equal(out['gt_masks'].masks, masks)
    assert np.array_equal(out['homography_matrix'], before['homography_matrix'])
    assert out['img_shape'] == (48, 64)


def test_each_op_changes_the_image():
    off = dict(color_jitter_prob=0.0, blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0)
    img = _results()['img']
    assert np.array_equal(AlbuPhotometric(seed=0, **off)(dict(img=img.copy()))['img'], img)
    for name in off:
        # blur sigma >= 1 so the kernel is never 1x1 (an identity)
        one = dict(off, **{name: 1.0}, blur_sigma=(1.0, 2.0))
        out = AlbuPhotometric(seed=0, **one)(dict(img=img.copy()))['img']
        assert not np.array_equal(out, img), name


def test_reproducible_with_seed():
    def run(seed, calls=2):
        transform = AlbuPhotometric(seed=seed)
        return [transform(_results(i))['img'] for i in range(calls)]

    first, again, other = run(0), run(0), run(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_seed_none_follows_numpy_global_seed():
    def run():
        np.random.seed(123)
        transform = AlbuPhotometric(**ALWAYS)
        return transform(_results())['img']

    assert np.array_equal(run(), run())


def test_rejects_bad_input():
    with pytest.raises(TypeError, match='uint8'):
        AlbuPhotometric()(dict(img=np.zeros((4, 4, 3), np.float32)))
    with pytest.raises(ValueError, match='Probabilities'):
        AlbuPhotometric(blur_prob=1.5)
    with pytest.raises(ValueError, match='jpeg_quality'):
        AlbuPhotometric(jpeg_quality=(90, 40))
    with pytest.raises(ValueError, match='channel_order'):
        AlbuPhotometric(channel_order='hsv')


def test_bgr_images_desaturate_with_the_luma_of_their_true_colours():
    """channel_order is honoured: desaturating pulls a pure red pixel towards a brighter grey
    than a pure blue one (luma weights 0.299 and 0.114), whether the image is stored BGR
    (LoadImageFromFile's default) or RGB."""
    saturation_only = dict(color_jitter_prob=1.0, brightness=0.0, contrast=0.0,
                           saturation=0.9, hue=0.0, blur_prob=0.0, noise_prob=0.0,
                           jpeg_prob=0.0, seed=SATURATION_SEED)
    red, blue = [255, 0, 0], [0, 0, 255]  # RGB
    for order in ('bgr', 'rgb'):
        img = np.zeros((4, 8, 3), np.uint8)
        img[:, :4], img[:, 4:] = (red, blue) if order == 'rgb' else (red[::-1], blue[::-1])
        out = AlbuPhotometric(channel_order=order, **saturation_only)(dict(img=img))['img']
        green = out[..., 1].astype(int)  # 0 in both colours, in both orders
        assert green[:, :4].min() > green[:, 4:].max() > 0, order
