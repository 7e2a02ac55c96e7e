"""Show the pseudo labels the student trains on: counts in the log, drawings in the vis backends."""
import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmdet.structures.mask import BitmapMasks, PolygonMasks, bitmap_to_polygon
from mmdet.visualization import DetLocalVisualizer
from mmdet.visualization.palette import get_palette
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.structures import InstanceData
from mmengine.visualization import Visualizer

from ssl_det.registry import HOOKS

Color = Union[str, Tuple[int, int, int]]


@HOOKS.register_module()
class PseudoLabelVisHook(Hook):
    """Log pseudo-label counts every iteration and draw them every ``interval``.

    After each training iteration the hook reads ``model.latest_pseudo`` (the
    strong-view batch and its data samples, whose ``gt_instances`` are the pseudo
    instances, already mapped into the strong view, and whose ``ignored_instances`` are the
    ignored band). It logs the mean number of pseudo and ignored boxes per image as
    ``train/pseudo_boxes_per_img`` and ``train/ignored_boxes_per_img``. Every
    ``interval`` iterations (main process only) it de-normalises the first
    ``max_images`` strong-view images (the student's input, so what is drawn is what the
    student trains on) with the data preprocessor's mean/std, crops the batch padding,
    enlarges an image whose long side is under ``min_size`` by the smallest integer
    factor that reaches it (nearest neighbour: every pixel becomes a square block, and the
    boxes and masks are scaled by the same factor, so they stay exactly on their objects),
    draws the pseudo boxes (and masks) in the class palette with their class names and the
    ignored boxes dashed in ``ignored_color``, puts the images side by side and calls
    ``visualizer.add_image('pseudo_labels', image, step=runner.iter + 1)``;
    ``LocalVisBackend`` writes it to
    ``<work_dir>/<timestamp>/vis_data/vis_image/pseudo_labels_<step>.png``. A model that
    mixes its strong views (``TeacherStudent(mixing=...)``) also exposes
    ``latest_mixed``, the last Mosaic (or Mixup) batch with its carried boxes, drawn the
    same way as ``pseudo_labels_mixed_<step>.png``.

    Colours, alpha and line width come from a :class:`DetLocalVisualizer` (``bbox_color``,
    ``text_color``, ``mask_color``, ``alpha``, ``line_width``, ``dataset_meta``'s classes and
    palette); a plain :class:`Visualizer` draws green boxes with ``class <i>`` labels. Line
    widths are in points on the drawn picture (mmengine caps them at a quarter of its
    default font size: 2.5 pt, about 3.5 px, on pictures up to ~900 px), so they keep their
    width in pixels however much the image was enlarged.

    Args:
        interval (int): Draw every ``interval`` training iterations; 0 disables
            drawing (the counts are still logged). Defaults to 50.
        max_images (int): How many images of the batch to draw. Defaults to 4.
        ignored_color (str or tuple[int]): Edge colour of the ignored boxes
            (RGB). Defaults to (160, 160, 160), grey.
        channel_order (str, optional): Channel order of the model's input
            tensor, ``'rgb'`` or ``'bgr'``. None infers it from the data
            preprocessor: RGB if it converts channels (``bgr_to_rgb=True`` on
            BGR-loaded images, mmdet's default), else BGR. Defaults to None.
        min_size (int): Smallest long side of a drawn image, in pixels: a smaller image is
            enlarged by an integer factor (128 px -> 4x, 512 px); a larger one is drawn at
            its own size. 0 draws every image at its own size. Defaults to 512.
        font_size (int): Font size of the class names in points on the drawn picture (13:
            about 18 px high, mmdet's largest label size), whatever the box's size.
            Defaults to 13.
    """

    priority = 'NORMAL'

    def __init__(self,
                 interval: int = 50,
                 max_images: int = 4,
                 ignored_color: Color = (160, 160, 160),
                 channel_order: Optional[str] = None,
                 min_size: int = 512,
                 font_size: int = 13) -> None:
        if interval < 0:
            raise ValueError(f'PseudoLabelVisHook: interval must be >= 0 (0 disables '
                             f'drawing), got {interval}.')
        if max_images < 1:
            raise ValueError(f'PseudoLabelVisHook: max_images must be >= 1, got {max_images}.')
        if channel_order not in (None, 'rgb', 'bgr'):
            raise ValueError(f"PseudoLabelVisHook: channel_order must be None, 'rgb' or "
                             f"'bgr', got {channel_order!r}.")
        if not isinstance(min_size, int) or min_size < 0:
            raise ValueError(f'PseudoLabelVisHook: min_size must be an int >= 0 (0 draws '
                             f'every image at its own size), got {min_size!r}.')
        if not font_size > 0:
            raise ValueError(f'PseudoLabelVisHook: font_size must be > 0, got {font_size!r}.')
        self.interval = interval
        self.max_images = max_images
        self.ignored_color = ignored_color
        self.channel_order = channel_order
        self.min_size = min_size
        self.font_size = font_size

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Log the counts of this iteration's pseudo labels; draw them every
        ``interval`` iterations."""
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        pseudo = getattr(model, 'latest_pseudo', None)
        if pseudo is None:  # burn-in, or a model that does not expose its pseudo labels
            return
        data_samples = pseudo['data_samples']
        if data_samples and 'gt_instances_3d' in data_samples[0]:
            self._after_train_iter_3d(runner, model, pseudo)
            return
        num_images = max(len(data_samples), 1)
        num_pseudo = sum(len(s.gt_instances) for s in data_samples)
        num_ignored = sum(_num_ignored(s) for s in data_samples)
        runner.message_hub.update_scalar('train/pseudo_boxes_per_img', num_pseudo / num_images)
        runner.message_hub.update_scalar('train/ignored_boxes_per_img',
                                         num_ignored / num_images)

        if self.interval and self.every_n_train_iters(runner, self.interval) \
                and is_main_process():
            visualizer = getattr(runner, 'visualizer', None) or \
                Visualizer.get_current_instance()
            image = self.draw(visualizer, model.data_preprocessor, pseudo['inputs'],
                              data_samples)
            visualizer.add_image('pseudo_labels', image, step=runner.iter + 1)
            mixed = getattr(model, 'latest_mixed', None)
            if mixed is not None:
                image = self.draw(visualizer, model.data_preprocessor, mixed['inputs'],
                                  mixed['data_samples'])
                visualizer.add_image('pseudo_labels_mixed', image, step=runner.iter + 1)

    def _after_train_iter_3d(self, runner, model: nn.Module, pseudo: dict) -> None:
        """Point clouds: counts per scene, and a bird's-eye view of the first strong view
        with its tiers (high solid, middle dashed, low and ignored grey)."""
        samples = pseudo['data_samples']
        num = max(len(samples), 1)
        runner.message_hub.update_scalar(
            'train/pseudo_boxes_per_img', sum(len(s.gt_instances_3d) for s in samples) / num)
        runner.message_hub.update_scalar(
            'train/ignored_boxes_per_img',
            sum(len(s.ignored_instances_3d) for s in samples
                if 'ignored_instances_3d' in s and 'bboxes_3d' in s.ignored_instances_3d) / num)
        if not (self.interval and self.every_n_train_iters(runner, self.interval)
                and is_main_process()):
            return
        visualizer = getattr(runner, 'visualizer', None) or Visualizer.get_current_instance()
        voxelizer = getattr(getattr(model, 'student', None), 'voxelizer', None)
        classes = (runner.train_dataloader.dataset.metainfo or {}).get('classes')
        pcr = getattr(voxelizer, 'point_cloud_range', None)
        image = self.draw_3d(pseudo['inputs']['points'][0], samples[0], classes, pcr)
        visualizer.add_image('pseudo_labels', image, step=runner.iter + 1)
        pasted = getattr(model, 'latest_pasted', None)  # TeacherStudent3D(object_bank=...)
        if pasted is not None:
            image = self.draw_3d(pasted['points'], pasted['data_sample'], classes, pcr,
                                 title='labeled scene: its labels solid, pasted objects dashed')
            visualizer.add_image('pseudo_labels_pasted', image, step=runner.iter + 1)

    @staticmethod
    def draw_3d(points: torch.Tensor, sample, classes=None, point_cloud_range=None,
                title: str = 'pseudo labels: high solid, middle dashed, low / ignored grey'
                ) -> np.ndarray:
        """BEV picture of one strong view: high pseudo boxes solid, middle dashed, low and
        ignored grey (``metainfo['pseudo_tiers']`` when the model sets it; a labeled scene
        with pasted objects sets its labels as high and the pasted boxes as middle)."""
        from ssl_det.structures.bev_shuffle import moves_features, unshuffle_points
        from ssl_det.visualization import draw_bev
        shuffle = sample.metainfo.get('bev_shuffle')
        if moves_features(shuffle):  # the boxes are in the unshuffled frame: so the points
            points = unshuffle_points(points, shuffle)
        tiers = sample.metainfo.get('pseudo_tiers') or dict(high=sample.gt_instances_3d.bboxes_3d)
        boxes, labels, styles = [], [], []
        for name, style in (('high', 'solid'), ('middle', 'dashed'), ('low', 'grey')):
            if name in tiers and len(tiers[name]):
                boxes.append(_as_numpy(tiers[name]).reshape(-1, 7))
                labels.append(_as_numpy(tiers[f'{name}_labels']) if f'{name}_labels' in tiers
                              else np.zeros(len(boxes[-1]), np.int64))
                styles += [style] * len(boxes[-1])
        ignored = sample.get('ignored_instances_3d')
        if ignored is not None and 'bboxes_3d' in ignored and len(ignored):
            boxes.append(_as_numpy(ignored.bboxes_3d).reshape(-1, 7))
            labels.append(_as_numpy(ignored.labels_3d) if 'labels_3d' in ignored
                          else np.zeros(len(boxes[-1]), np.int64))
            styles += ['grey'] * len(boxes[-1])
        pred = np.concatenate(boxes) if boxes else np.zeros((0, 7))
        pred_labels = np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64)
        return draw_bev(_as_numpy(points), pred_boxes=pred, pred_labels=pred_labels,
                        styles=styles, classes=classes,
                        point_cloud_range=point_cloud_range, title=title)

    def draw(self, visualizer: Visualizer, data_preprocessor: nn.Module, inputs: torch.Tensor,
             data_samples: Sequence) -> np.ndarray:
        """Draw the first ``max_images`` images with their pseudo and ignored boxes.

        Args:
            visualizer (Visualizer): Draws; a :class:`DetLocalVisualizer` labels the
                pseudo boxes with class names and the dataset palette.
            data_preprocessor (nn.Module): Gives ``mean``/``std`` to undo the
                normalisation (absent: the inputs are not normalised).
            inputs (Tensor): The strong-view batch, N x 3 x H x W.
            data_samples (Sequence[DetDataSample]): The strong-view samples.

        Returns:
            np.ndarray: The drawn images side by side, H x W x 3 uint8 RGB, each enlarged
            to ``min_size`` if it is smaller.
        """
        images = self.denormalize(inputs[:self.max_images], data_preprocessor)
        drawn = []
        for image, sample in zip(images, data_samples):
            height, width = sample.metainfo.get('img_shape', image.shape[:2])[:2]
            # Crop the batch padding: the boxes live in the image, not in the pad.
            image = np.ascontiguousarray(image[:height, :width])
            drawn.append(self._draw_one(visualizer, image, sample))
        return _side_by_side(drawn)

    def denormalize(self, inputs: torch.Tensor, data_preprocessor: nn.Module) -> np.ndarray:
        """Undo the data preprocessor: N x 3 x H x W normalised -> N x H x W x 3 uint8 RGB."""
        images = inputs.detach().float().cpu()
        # MultiBranchDataPreprocessor (teacher-student models) wraps the one that normalises.
        data_preprocessor = getattr(data_preprocessor, 'data_preprocessor', data_preprocessor)
        mean = getattr(data_preprocessor, 'mean', None)
        std = getattr(data_preprocessor, 'std', None)
        if std is not None:
            images = images * std.detach().float().cpu().view(1, -1, 1, 1)
        if mean is not None:
            images = images + mean.detach().float().cpu().view(1, -1, 1, 1)
        images = images.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        channel_order = self.channel_order
        if channel_order is None:
            converts = getattr(data_preprocessor, '_channel_conversion', False)
            channel_order = 'rgb' if converts else 'bgr'
        if channel_order == 'bgr':
            images = images[..., ::-1]
        return np.ascontiguousarray(images)

    def _draw_one(self, visualizer: Visualizer, image: np.ndarray, sample) -> np.ndarray:
        """One image, enlarged to ``min_size`` if smaller, with its boxes scaled along."""
        factor = upscale_factor(image.shape[:2], self.min_size)
        pseudo = _for_drawing(sample.gt_instances, image.shape[:2])
        visualizer.set_image(_upscale(image, factor))
        det = isinstance(visualizer, DetLocalVisualizer)
        meta = (visualizer.dataset_meta or {}) if det else {}
        classes, palette = meta.get('classes'), meta.get('palette')
        alpha = visualizer.alpha if det else 0.8
        line_width = getattr(visualizer, 'line_width', 3)
        labels = pseudo.labels if 'labels' in pseudo else np.zeros(0, np.int64)
        num_colors = int(labels.max()) + 1 if len(labels) else 1
        if 'masks' in pseudo and len(pseudo.masks):
            masks = pseudo.masks.repeat(factor, axis=1).repeat(factor, axis=2)
            mask_palette = get_palette(palette if not det or visualizer.mask_color is None
                                       else visualizer.mask_color, num_colors)
            contours = [c for mask in masks for c in bitmap_to_polygon(mask)[0]]
            if contours:
                visualizer.draw_polygons(contours, edge_colors='w', alpha=alpha)
            visualizer.draw_binary_masks(masks, colors=[mask_palette[i] for i in labels],
                                         alphas=alpha)
        if 'bboxes' in pseudo and len(pseudo.bboxes):
            bboxes = pseudo.bboxes * factor
            if det:
                box_palette = get_palette(palette if visualizer.bbox_color is None
                                          else visualizer.bbox_color, num_colors)
                text_palette = get_palette(visualizer.text_color, num_colors)
                box_colors = [box_palette[i] for i in labels]
                text_colors = [text_palette[i] for i in labels]
            else:
                box_colors, text_colors = 'g', ['w'] * len(labels)
            visualizer.draw_bboxes(bboxes, edge_colors=box_colors, alpha=alpha,
                                   line_widths=line_width)
            for box, label, color in zip(bboxes, labels, text_colors):
                name = (classes[label] if classes is not None and label < len(classes)
                        else f'class {label}')
                visualizer.draw_texts(
                    name, box[:2] + line_width, colors=color, font_sizes=self.font_size,
                    bboxes=[dict(facecolor='black', alpha=0.8, pad=0.7, edgecolor='none')])
        if 'ignored_instances' in sample and len(sample.ignored_instances):
            visualizer.draw_bboxes(
                _as_numpy(sample.ignored_instances.bboxes).reshape(-1, 4) * factor,
                edge_colors=self.ignored_color, alpha=alpha, line_styles='--',
                line_widths=line_width)
        return visualizer.get_image()


def upscale_factor(shape: Tuple[int, int], min_size: int) -> int:
    """The smallest integer factor that makes the long side of ``shape`` at least
    ``min_size`` (1 when it already is, or when ``min_size`` is 0)."""
    long_side = max(shape[:2])
    if min_size <= 0 or long_side <= 0 or long_side >= min_size:
        return 1
    return math.ceil(min_size / long_side)


def _upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of an H x W (x C) array by an integer factor: pixel
    (i, j) becomes the block [factor*i, factor*(i+1)) x [factor*j, factor*(j+1)), so a box
    (x1, y1, x2, y2) on the image is (factor*x1, ..., factor*y2) on the result."""
    if factor == 1:
        return image
    return np.ascontiguousarray(image.repeat(factor, axis=0).repeat(factor, axis=1))


def _num_ignored(sample) -> int:
    return len(sample.ignored_instances) if 'ignored_instances' in sample else 0


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _for_drawing(instances: InstanceData, shape: Tuple[int, int]) -> InstanceData:
    """CPU numpy copy of ``instances`` with masks cropped or padded to ``shape``."""
    out = InstanceData()
    if 'bboxes' in instances:
        bboxes = instances.bboxes
        out.bboxes = _as_numpy(getattr(bboxes, 'tensor', bboxes)).reshape(-1, 4)
        out.labels = _as_numpy(instances.labels).astype(np.int64)
    if 'masks' in instances:
        masks = instances.masks
        if isinstance(masks, (BitmapMasks, PolygonMasks)):
            masks = masks.to_ndarray()
        masks = _as_numpy(masks).astype(bool)
        fitted = np.zeros((masks.shape[0], *shape), dtype=bool)
        h, w = min(shape[0], masks.shape[1]), min(shape[1], masks.shape[2])
        fitted[:, :h, :w] = masks[:, :h, :w]
        out.masks = fitted
        if 'labels' not in out:
            out.labels = _as_numpy(instances.labels).astype(np.int64)
    return out


def _side_by_side(images: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Place images left to right on a white canvas, top-aligned."""
    height = max(image.shape[0] for image in images)
    width = sum(image.shape[1] for image in images) + gap * (len(images) - 1)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for image in images:
        canvas[:image.shape[0], x:x + image.shape[1]] = image
        x += image.shape[1] + gap
    return canvas
