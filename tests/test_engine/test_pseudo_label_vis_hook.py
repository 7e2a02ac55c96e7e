import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from engine_fakes import FakeRunner, FakeTeacherStudent, unique_name
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import InstanceData
from mmengine.visualization import Visualizer

from ssl_det.engine.hooks import PseudoLabelVisHook
from ssl_det.engine.hooks.pseudo_label_vis_hook import upscale_factor

MEAN, STD = [10.0, 20.0, 30.0], [2.0, 3.0, 4.0]
H, W = 64, 96
K = 6  # the default min_size=512 enlarges 96 px to 576 px
BACKGROUND = (40, 80, 120)  # RGB
PSEUDO_BOX = [8, 8, 40, 56]
IGNORED_BOX = [52, 8, 88, 56]
PSEUDO_PX = [K * v for v in PSEUDO_BOX]  # where they are on the drawn picture
IGNORED_PX = [K * v for v in IGNORED_BOX]


def preprocessed(rgb: np.ndarray, bgr_to_rgb: bool = True) -> torch.Tensor:
    """What an ImgDataPreprocessor with MEAN/STD makes of an image loaded as BGR."""
    chw = torch.from_numpy(rgb if bgr_to_rgb else rgb[..., ::-1].copy()).permute(2, 0, 1)
    return (chw.float() - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def sample(n_pseudo: int = 1, n_ignored: int = 1, masks: bool = False) -> DetDataSample:
    s = DetDataSample(metainfo=dict(img_shape=(H, W)))
    s.gt_instances = InstanceData(bboxes=torch.tensor([PSEUDO_BOX] * n_pseudo).float(),
                                  labels=torch.zeros(n_pseudo, dtype=torch.long))
    if masks:
        m = np.zeros((n_pseudo, H, W), dtype=np.uint8)
        m[:, 20:44, 12:36] = 1
        s.gt_instances.masks = BitmapMasks(m, H, W)
    s.ignored_instances = InstanceData(bboxes=torch.tensor([IGNORED_BOX] * n_ignored).float(),
                                       labels=torch.ones(n_ignored, dtype=torch.long))
    return s


def setup(tmp_path, n_images=3, masks=False, bgr_to_rgb=True, visualizer_cls=DetLocalVisualizer):
    preprocessor = dict(type='ImgDataPreprocessor', mean=MEAN, std=STD, bgr_to_rgb=bgr_to_rgb)
    model = FakeTeacherStudent(data_preprocessor=preprocessor)
    image = np.empty((H, W, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    model.latest_pseudo = dict(
        inputs=preprocessed(image, bgr_to_rgb)[None].repeat(n_images, 1, 1, 1),
        data_samples=[sample(1, 1, masks), sample(2, 0), sample(0, 3)][:n_images])
    visualizer = visualizer_cls(name=unique_name('vis'), save_dir=str(tmp_path),
                                vis_backends=[dict(type='LocalVisBackend')])
    return model, image, FakeRunner(model, visualizer=visualizer)


def enlarged(image, k=K):
    return image.repeat(k, axis=0).repeat(k, axis=1)


def written(tmp_path, step):
    path = tmp_path / 'vis_data' / 'vis_image' / f'pseudo_labels_{step}.png'
    assert path.exists(), list(tmp_path.rglob('*'))
    return cv2.imread(str(path))[..., ::-1].astype(int)  # RGB


def edge(box, side):
    """Pixel coordinates (rows, cols) on one side of a box, away from its corners."""
    x1, y1, x2, y2 = box
    if side == 'left':
        return slice(y1 + 60, y2 - 24), x1
    return y2, slice(x1 + 36, x2 - 36)  # bottom


@pytest.mark.parametrize('bgr_to_rgb', [True, False])
def test_denormalize_restores_the_rgb_image(tmp_path, bgr_to_rgb):
    model, image, _ = setup(tmp_path, bgr_to_rgb=bgr_to_rgb)
    images = PseudoLabelVisHook().denormalize(model.latest_pseudo['inputs'],
                                              model.data_preprocessor)
    assert images.shape == (3, H, W, 3) and images.dtype == np.uint8
    assert np.array_equal(images[0], image)


def test_draws_pseudo_and_ignored_boxes_differently(tmp_path):
    model, image, runner = setup(tmp_path)
    runner.iter = 49  # the 50th iteration
    PseudoLabelVisHook(interval=50, max_images=2).after_train_iter(runner, batch_idx=0)

    drawn = written(tmp_path, 50)
    # two images enlarged 6x (96 px -> 576 px), side by side, 4 px apart
    assert drawn.shape == (K * H, 2 * K * W + 4, 3)
    first = drawn[:, :K * W]
    plain = enlarged(image).astype(int)
    changed = np.abs(first - plain).sum(-1) > 30
    # boxes are drawn on their outlines, the rest of the image is untouched
    assert changed[edge(PSEUDO_PX, 'left')].all()
    assert changed[edge(PSEUDO_PX, 'bottom')].all()
    assert not changed[180:204, 120:180].any()  # inside the pseudo box, away from the label
    assert not changed[:, 260:292].any()  # between the boxes
    # ignored boxes: dashed (gaps along the edge) and grey, unlike the solid pseudo box
    ignored = changed[edge(IGNORED_PX, 'bottom')]
    assert 0.3 < ignored.mean() < 0.95
    ignored_px = first[edge(IGNORED_PX, 'bottom')][ignored]
    grey_over_background = 0.8 * 160 + 0.2 * np.array(BACKGROUND)  # the visualizer's alpha 0.8
    assert np.abs(np.median(ignored_px, axis=0) - grey_over_background).max() <= 3
    pseudo_px = first[edge(PSEUDO_PX, 'bottom')]
    assert np.abs(np.median(pseudo_px, axis=0) - grey_over_background).max() > 40
    # the second image has two pseudo boxes and no ignored one
    second = drawn[:, K * W + 4:]
    assert not (np.abs(second - plain).sum(-1) > 30)[edge(IGNORED_PX, 'bottom')].any()


def test_draws_masks(tmp_path):
    model, image, runner = setup(tmp_path, n_images=1, masks=True)
    runner.iter = 9
    PseudoLabelVisHook(interval=10).after_train_iter(runner, batch_idx=0)
    drawn = written(tmp_path, 10)
    assert drawn.shape == (K * H, K * W, 3)
    # the mask (rows 20-44, columns 12-36) enlarged with the image: tinted inside, from its
    # first enlarged row on; the rows above it are not
    plain = enlarged(image).astype(int)
    tint = np.abs(drawn - plain).sum(-1) > 30
    assert tint[K * 20 + 2:K * 44 - 2, K * 12 + 30:K * 36 - 2].all()
    assert not tint[K * 20 - 20:K * 20 - 8, K * 12 + 30:K * 36 - 30].any()


def test_logs_counts_every_iteration_and_draws_every_interval(tmp_path):
    model, _, runner = setup(tmp_path)
    hook = PseudoLabelVisHook(interval=50)
    runner.iter = 10
    hook.after_train_iter(runner, batch_idx=0)
    assert not (tmp_path / 'vis_data' / 'vis_image').exists()
    hub = runner.message_hub
    assert hub.get_scalar('train/pseudo_boxes_per_img').current() == pytest.approx(3 / 3)
    assert hub.get_scalar('train/ignored_boxes_per_img').current() == pytest.approx(4 / 3)

    PseudoLabelVisHook(interval=0).after_train_iter(runner, batch_idx=0)
    runner.iter = 99
    PseudoLabelVisHook(interval=0).after_train_iter(runner, batch_idx=0)
    assert not (tmp_path / 'vis_data' / 'vis_image').exists()


def test_nothing_before_the_first_pseudo_labels(tmp_path):
    model, _, runner = setup(tmp_path)
    model.latest_pseudo = None
    runner.iter = 49
    PseudoLabelVisHook(interval=50).after_train_iter(runner, batch_idx=0)
    assert not (tmp_path / 'vis_data' / 'vis_image').exists()
    assert 'train/pseudo_boxes_per_img' not in runner.message_hub.log_scalars


def test_plain_visualizer(tmp_path):
    model, image, runner = setup(tmp_path, n_images=1, visualizer_cls=Visualizer)
    runner.iter = 49
    PseudoLabelVisHook(interval=50).after_train_iter(runner, batch_idx=0)
    changed = np.abs(written(tmp_path, 50) - enlarged(image).astype(int)).sum(-1) > 30
    assert changed[edge(PSEUDO_PX, 'left')].all()
    assert changed[edge(IGNORED_PX, 'bottom')].any()


@pytest.mark.parametrize('kwargs', [dict(interval=-1), dict(max_images=0),
                                    dict(channel_order='hsv'), dict(min_size=-1),
                                    dict(min_size=512.0), dict(font_size=0)])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match='PseudoLabelVisHook'):
        PseudoLabelVisHook(**kwargs)


def test_crops_batch_padding(tmp_path):
    model, image, runner = setup(tmp_path, n_images=2)
    padded = torch.zeros(2, 3, H + 8, W + 16)  # the batch is padded past img_shape
    padded[:, :, :H, :W] = model.latest_pseudo['inputs'][:2]
    drawn = PseudoLabelVisHook(max_images=2).draw(
        runner.visualizer, model.data_preprocessor, padded, model.latest_pseudo['data_samples'])
    assert drawn.shape == (K * H, 2 * K * W + 4, 3)
    assert (drawn[:, K * W:K * W + 4] == 255).all()  # the white gap between images


def test_denormalize_through_multi_branch_preprocessor():
    """Teacher-student models wrap their DetDataPreprocessor in MultiBranchDataPreprocessor;
    the picture must still come out in the image's colours, not black."""
    from mmdet.models.data_preprocessors import MultiBranchDataPreprocessor
    inner = dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                 std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
    preprocessor = MultiBranchDataPreprocessor(data_preprocessor=inner)
    rgb = np.random.default_rng(0).integers(0, 256, (1, 8, 8, 3)).astype(np.float32)
    mean = np.array(inner['mean'], np.float32)
    std = np.array(inner['std'], np.float32)
    normalised = torch.from_numpy((rgb - mean) / std).permute(0, 3, 1, 2)
    out = PseudoLabelVisHook().denormalize(normalised, preprocessor)
    np.testing.assert_allclose(out.astype(np.float32), rgb, atol=1)


@pytest.mark.parametrize('shape, min_size, factor', [
    ((128, 128), 512, 4), ((96, 128), 512, 4), ((100, 100), 512, 6), ((64, 96), 512, 6),
    ((511, 10), 512, 2), ((512, 300), 512, 1), ((900, 1333), 512, 1), ((128, 128), 0, 1)])
def test_upscale_factor(shape, min_size, factor):
    assert upscale_factor(shape, min_size) == factor
    if factor > 1:
        assert max(shape) * factor >= min_size > max(shape) * (factor - 1)


def runs(flags: np.ndarray):
    """(start, stop) of each run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.r_[0, flags.astype(int), 0]))
    return list(zip(edges[::2], edges[1::2]))


MAGENTA, OBJECT = (255, 0, 255), (250, 200, 0)
OBJECT_BOX = [37, 21, 81, 63]  # odd coordinates: a box scaled wrongly lands elsewhere


def object_scene(height=96, width=128, box=OBJECT_BOX):
    """A synthetic image with one filled rectangle (the object) and its pseudo box."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = BACKGROUND
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = OBJECT
    s = DetDataSample(metainfo=dict(img_shape=(height, width)))
    s.gt_instances = InstanceData(bboxes=torch.tensor([box]).float(),
                                  labels=torch.zeros(1, dtype=torch.long))
    visualizer = DetLocalVisualizer(name=unique_name('vis'))
    visualizer.dataset_meta = dict(classes=('thing', ), palette=[MAGENTA])
    inputs = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    return image, s, visualizer, inputs


def test_small_image_is_enlarged_and_the_box_lands_on_the_enlarged_object():
    """128 x 96 -> 512 x 384 (4x): the box outline runs along the object's enlarged border,
    in the class colour; the object and the background are the image's, pixel for pixel."""
    image, s, visualizer, inputs = object_scene()
    drawn = PseudoLabelVisHook(channel_order='rgb').draw(visualizer, nn.Identity(), inputs,
                                                        [s]).astype(int)
    assert drawn.shape == (384, 512, 3)
    x1, y1, x2, y2 = (4 * v for v in OBJECT_BOX)  # 148, 84, 324, 252
    plain = enlarged(image, 4).astype(int)
    changed = np.abs(drawn - plain).sum(-1) > 30
    # a row through the object's middle crosses the outline twice, centred on its borders
    row = (y1 + y2) // 2
    (a0, a1), (b0, b1) = runs(changed[row])
    assert abs((a0 + a1) / 2 - x1) <= 1 and abs((b0 + b1) / 2 - x2) <= 1
    col = (x1 + x2) // 2  # and a column, away from the label
    [(c0, c1)] = runs(changed[y1 + 40:, col])  # the bottom edge alone below the label
    assert abs(y1 + 40 + (c0 + c1) / 2 - y2) <= 1
    # on the edge: the class colour (alpha 0.8) over the object; either side of the line:
    # the object inside, the background outside, unchanged
    on_edge = np.median(drawn[y1 + 40:y2 - 40, x1], axis=0)
    assert np.abs(on_edge - (0.8 * np.array(MAGENTA) + 0.2 * np.array(OBJECT))).max() <= 4
    assert (drawn[y1 + 40:y2 - 40, x1 + 4] == OBJECT).all()
    assert (drawn[y1 + 40:y2 - 40, x1 - 4] == BACKGROUND).all()
    assert (drawn[y1 + 40:y2 - 40, x2 - 4] == OBJECT).all()
    assert (drawn[y1 + 40:y2 - 40, x2 + 3] == BACKGROUND).all()
    # the class name sits at the box's top-left corner, inside it
    label = (np.abs(drawn - plain).sum(-1) > 30)[y1 + 4:y1 + 30, x1 + 6:x1 + 60]
    assert label.mean() > 0.5


def test_large_image_is_drawn_at_its_own_size():
    box = [4 * v for v in OBJECT_BOX]
    image, s, visualizer, inputs = object_scene(384, 600, box)
    drawn = PseudoLabelVisHook(channel_order='rgb').draw(visualizer, nn.Identity(), inputs, [s])
    assert drawn.shape == (384, 600, 3)
    changed = np.abs(drawn.astype(int) - image.astype(int)).sum(-1) > 30
    (a0, a1), (b0, b1) = runs(changed[(box[1] + box[3]) // 2])
    assert abs((a0 + a1) / 2 - box[0]) <= 1 and abs((b0 + b1) / 2 - box[2]) <= 1
    # min_size=0: a small image too
    image, s, visualizer, inputs = object_scene()
    drawn = PseudoLabelVisHook(channel_order='rgb', min_size=0).draw(
        visualizer, nn.Identity(), inputs, [s])
    assert drawn.shape == (96, 128, 3)


def test_font_size_and_line_width_on_the_enlarged_picture():
    """The class name is 13 pt (about 18 px high) by default, settable; the outline keeps
    the visualizer's width in pixels (about 4 px), not 4x it."""
    heights, widths = {}, {}
    for font_size in (13, 26):
        image, s, visualizer, inputs = object_scene()
        drawn = PseudoLabelVisHook(channel_order='rgb', font_size=font_size).draw(
            visualizer, nn.Identity(), inputs, [s])
        changed = np.abs(drawn.astype(int) - enlarged(image, 4).astype(int)).sum(-1) > 30
        (a0, a1), _ = runs(changed[168])
        widths[font_size] = a1 - a0
        # the black box behind the name, from the top edge's line down
        heights[font_size] = runs(changed[4 * 21 + 3:, 4 * 37 + 10])[0][1]
    assert 3 <= widths[13] <= 6 and widths[26] == widths[13]
    assert 16 <= heights[13] <= 30
    assert heights[26] >= 1.7 * heights[13]


def test_point_cloud_counts_every_iteration_and_draws_the_bev_every_interval(tmp_path):
    """Point-cloud pseudo labels: the counts per scene are logged every iteration, the BEV
    picture is written only at the interval's iterations (the 50th: step 50)."""
    from types import SimpleNamespace

    from ssl_det.structures import PointCloudDataSample
    box = [10., 0., -1., 4., 2., 1.6, 0.]
    s = PointCloudDataSample()
    s.gt_instances_3d = InstanceData(bboxes_3d=torch.tensor([box]), labels_3d=torch.tensor([0]))
    s.ignored_instances_3d = InstanceData(bboxes_3d=torch.tensor([box, box]) + 5,
                                          labels_3d=torch.tensor([0, 0]))
    model = FakeTeacherStudent()
    model.latest_pseudo = dict(inputs=dict(points=[torch.zeros(0, 4)]), data_samples=[s])
    visualizer = Visualizer(name=unique_name('vis'), save_dir=str(tmp_path),
                            vis_backends=[dict(type='LocalVisBackend')])
    runner = FakeRunner(model, visualizer=visualizer)
    runner.train_dataloader = SimpleNamespace(dataset=SimpleNamespace(metainfo={}))
    hook = PseudoLabelVisHook(interval=50)
    runner.iter = 48  # the 49th iteration: counts only
    hook.after_train_iter(runner, batch_idx=0)
    assert runner.message_hub.get_scalar('train/pseudo_boxes_per_img').current() == 1
    assert runner.message_hub.get_scalar('train/ignored_boxes_per_img').current() == 2
    assert not (tmp_path / 'vis_data' / 'vis_image').exists()
    runner.iter = 49
    hook.after_train_iter(runner, batch_idx=0)
    pictures = sorted(p.name for p in (tmp_path / 'vis_data' / 'vis_image').iterdir())
    assert pictures == ['pseudo_labels_50.png']
    # a model that pasted objects into a labeled scene (object_bank) shows it too
    model.latest_pasted = dict(points=torch.zeros(0, 4), data_sample=s)
    runner.iter = 99
    hook.after_train_iter(runner, batch_idx=0)
    pictures = sorted(p.name for p in (tmp_path / 'vis_data' / 'vis_image').iterdir())
    assert pictures == ['pseudo_labels_100.png', 'pseudo_labels_50.png',
                        'pseudo_labels_pasted_100.png']
