import cv2
import numpy as np
import pytest
import torch
from engine_fakes import FakeRunner, FakeTeacherStudent, unique_name
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import InstanceData
from mmengine.visualization import Visualizer

from ssl_det.engine.hooks import PseudoLabelVisHook

MEAN, STD = [10.0, 20.0, 30.0], [2.0, 3.0, 4.0]
H, W = 64, 96
BACKGROUND = (40, 80, 120)  # RGB
PSEUDO_BOX = [8, 8, 40, 56]
IGNORED_BOX = [52, 8, 88, 56]


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


def written(tmp_path, step):
    path = tmp_path / 'vis_data' / 'vis_image' / f'pseudo_labels_{step}.png'
    assert path.exists(), list(tmp_path.rglob('*'))
    return cv2.imread(str(path))[..., ::-1].astype(int)  # RGB


def edge(box, side):
    """Pixel coordinates (rows, cols) on one side of a box, away from its corners."""
    x1, y1, x2, y2 = box
    if side == 'left':
        return slice(y1 + 10, y2 - 4), x1
    return y2, slice(x1 + 6, x2 - 6)  # bottom


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
    assert drawn.shape == (H, 2 * W + 4, 3)  # two images side by side, 4 px apart
    first = drawn[:, :W]
    plain = image.astype(int)
    changed = np.abs(first - plain).sum(-1) > 30
    # boxes are drawn on their outlines, the rest of the image is untouched
    assert changed[edge(PSEUDO_BOX, 'left')].all()
    assert changed[edge(PSEUDO_BOX, 'bottom')].all()
    assert not changed[30:34, 20:30].any()  # inside the pseudo box, away from the label
    assert not changed[:, 44:48].any()  # between the boxes
    # ignored boxes: dashed (gaps along the edge) and grey, unlike the solid pseudo box
    ignored = changed[edge(IGNORED_BOX, 'bottom')]
    assert 0.3 < ignored.mean() < 0.95
    ignored_px = first[edge(IGNORED_BOX, 'bottom')][ignored]
    grey_over_background = 0.8 * 160 + 0.2 * np.array(BACKGROUND)  # the visualizer's alpha 0.8
    assert np.abs(np.median(ignored_px, axis=0) - grey_over_background).max() <= 3
    pseudo_px = first[edge(PSEUDO_BOX, 'bottom')]
    assert np.abs(np.median(pseudo_px, axis=0) - grey_over_background).max() > 40
    # the second image has two pseudo boxes and no ignored one
    second = drawn[:, W + 4:]
    assert not (np.abs(second - plain).sum(-1) > 30)[edge(IGNORED_BOX, 'bottom')].any()


def test_draws_masks(tmp_path):
    model, image, runner = setup(tmp_path, n_images=1, masks=True)
    runner.iter = 9
    PseudoLabelVisHook(interval=10).after_train_iter(runner, batch_idx=0)
    drawn = written(tmp_path, 10)
    assert drawn.shape == (H, W, 3)
    inside_mask = np.abs(drawn[28:36, 18:30] - image[28:36, 18:30].astype(int)).sum(-1)
    assert (inside_mask > 30).all()


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
    changed = np.abs(written(tmp_path, 50) - image.astype(int)).sum(-1) > 30
    assert changed[edge(PSEUDO_BOX, 'left')].all()
    assert changed[edge(IGNORED_BOX, 'bottom')].any()


@pytest.mark.parametrize('kwargs', [dict(interval=-1), dict(max_images=0),
                                    dict(channel_order='hsv')])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match='PseudoLabelVisHook'):
        PseudoLabelVisHook(**kwargs)


def test_crops_batch_padding(tmp_path):
    model, image, runner = setup(tmp_path, n_images=2)
    padded = torch.zeros(2, 3, H + 8, W + 16)  # the batch is padded past img_shape
    padded[:, :, :H, :W] = model.latest_pseudo['inputs'][:2]
    drawn = PseudoLabelVisHook(max_images=2).draw(
        runner.visualizer, model.data_preprocessor, padded, model.latest_pseudo['data_samples'])
    assert drawn.shape == (H, 2 * W + 4, 3)
    assert (drawn[:, W:W + 4] == 255).all()  # the white gap between images


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
