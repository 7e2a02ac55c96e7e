"""Mixed pseudo labels (MixPL's idea): Mixup and Mosaic over pseudo-labeled strong views.

The student learns on strong views that carry the teacher's pseudo boxes (and masks). Mixing
a view with views of earlier batches, kept in a small cache with their pseudo labels, makes
new training images whose labels are known exactly: a Mixup keeps every box where it was, a
Mosaic scales and moves each view into one quadrant of a canvas. Each placement is recorded
as a 3x3 homography (source view -> mixed image), the convention of the weak -> strong
mapping, so boxes and masks go through :func:`project_boxes` / :func:`project_masks` and
anything a placement pushes off the canvas is clipped or dropped, never left dangling.

The functions here work on one image at a time (a ``(C, H, W)`` tensor, already normalised
by the data preprocessor) and know nothing of the model; :class:`PseudoMixer` keeps the
cache and builds mixed batches for :class:`TeacherStudent`.
"""
import random
from collections import deque
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from torch import Tensor

from ssl_det.structures import filter_degenerate, project_boxes, project_masks


def placement(offset_x: float, offset_y: float, scale_x: float = 1.0,
              scale_y: float = 1.0) -> Tensor:
    """The homography of a view scaled by ``(scale_x, scale_y)`` and moved to
    ``(offset_x, offset_y)``."""
    return torch.tensor([[scale_x, 0.0, offset_x], [0.0, scale_y, offset_y], [0.0, 0.0, 1.0]],
                        dtype=torch.float64)


def place_instances(instances: InstanceData, matrix: Tensor, canvas_hw: Tuple[int, int],
                    min_size: float) -> Tuple[InstanceData, int]:
    """Instances of a view mapped onto a mixed image by ``matrix``; boxes clipped to the
    canvas, those narrower or shorter than ``min_size`` dropped (their number returned)."""
    if len(instances) == 0:
        return instances, 0
    boxes, keep = filter_degenerate(project_boxes(instances.bboxes, matrix), canvas_hw,
                                    min_size)
    placed = InstanceData(metainfo=dict(img_shape=tuple(canvas_hw)))
    for key, value in instances.items():
        if key == 'bboxes':
            placed.bboxes = boxes[keep]
        elif key == 'masks':
            placed.masks = project_masks(value, matrix, canvas_hw)[keep.cpu().numpy()]
        else:
            placed[key] = value[keep]
    return placed, int((~keep).sum())


def concat_instances(parts: Sequence[InstanceData], canvas_hw: Tuple[int, int],
                     like: InstanceData) -> InstanceData:
    """One ``InstanceData`` of every part's instances (empty parts allowed)."""
    out = InstanceData(metainfo=dict(img_shape=tuple(canvas_hw)))
    parts = [p for p in parts if len(p)]
    if not parts:
        out.bboxes = like.bboxes.new_zeros((0, 4))
        out.labels = like.labels.new_zeros((0, ))
        if 'masks' in like:
            out.masks = project_masks(like.masks[:0], torch.eye(3, dtype=torch.float64),
                                      canvas_hw)
        return out
    out = InstanceData.cat(parts)  # masks (BitmapMasks) concatenate through their own cat
    out.set_metainfo(dict(img_shape=tuple(canvas_hw)))
    return out


def mixup(dst: Tensor, dst_shape: Tuple[int, int], src: Tensor, ratio: float = 0.5
          ) -> Tuple[Tensor, Tuple[int, int], Tensor]:
    """Blend ``src`` into ``dst``, both from the top-left corner (where views start).

    Where both views have content the result is ``ratio * dst + (1 - ratio) * src``; where
    only one has (views of different sizes), that view's own pixels; elsewhere the padding.

    Args:
        dst (Tensor): (C, H, W) padded image of the batch; its canvas.
        dst_shape (tuple): ``(h, w)`` of its content (``img_shape``).
        src (Tensor): (C, h', w') unpadded cached view; what overhangs the canvas is cut.
        ratio (float): the weight of ``dst``. Default: 0.5.

    Returns:
        ``(mixed image, img_shape of the mixed content, src's homography)``.
    """
    height, width = dst.shape[-2:]
    h, w = min(src.shape[-2], height), min(src.shape[-1], width)
    dh, dw = min(int(dst_shape[0]), height), min(int(dst_shape[1]), width)
    src_canvas = torch.zeros_like(dst)
    src_canvas[:, :h, :w] = src[:, :h, :w]
    in_src = torch.zeros(dst.shape[-2:], dtype=torch.bool, device=dst.device)
    in_src[:h, :w] = True
    in_dst = torch.zeros_like(in_src)
    in_dst[:dh, :dw] = True
    mixed = torch.where(in_src & in_dst, dst * ratio + src_canvas * (1.0 - ratio),
                        torch.where(in_dst, dst, src_canvas))
    shape = (max(dh, h), max(dw, w))
    return mixed, shape, placement(0.0, 0.0)


def mosaic(views: Sequence[Tensor], scales: Sequence[float], size_divisor: int = 32
           ) -> Tuple[Tensor, Tuple[int, int], List[Tensor]]:
    """Four views, each resized by its scale, in the quadrants of one canvas.

    The quadrants meet at one point: the top row's views end on its lower edge, the left
    column's on its right edge, so no view overlaps another; the canvas is padded with 0 (the
    mean colour once normalised) to a multiple of ``size_divisor``.

    Returns:
        ``(canvas (C, H, W), img_shape of the content, each view's homography)``.
    """
    if len(views) != 4 or len(scales) != 4:
        raise ValueError(f'a mosaic takes 4 views and 4 scales, got {len(views)} and '
                         f'{len(scales)}')
    sizes = [(max(1, round(v.shape[-2] * s)), max(1, round(v.shape[-1] * s)))
             for v, s in zip(views, scales)]
    # quadrants 0 1 / 2 3 around the centre (cx, cy)
    cy = max(sizes[0][0], sizes[1][0])
    cx = max(sizes[0][1], sizes[2][1])
    offsets = [(cx - sizes[0][1], cy - sizes[0][0]), (cx, cy - sizes[1][0]),
               (cx - sizes[2][1], cy), (cx, cy)]
    height = cy + max(sizes[2][0], sizes[3][0])
    width = cx + max(sizes[1][1], sizes[3][1])
    pad_h = -(-height // size_divisor) * size_divisor
    pad_w = -(-width // size_divisor) * size_divisor
    canvas = views[0].new_zeros((views[0].shape[0], pad_h, pad_w))
    matrices = []
    for view, (h, w), (ox, oy) in zip(views, sizes, offsets):
        resized = view if (h, w) == tuple(view.shape[-2:]) else F.interpolate(
            view[None], size=(h, w), mode='bilinear', align_corners=False)[0]
        canvas[:, oy:oy + h, ox:ox + w] = resized
        # box convention: pixel i covers [i, i + 1], so the resize is exact at the edges
        matrices.append(placement(ox, oy, w / view.shape[-1], h / view.shape[-2]))
    return canvas, (height, width), matrices


class PseudoMixer:
    """Mixup and Mosaic of pseudo-labeled strong views with views cached from earlier
    batches (MixPL, Chen et al., 2023).

    Each call of :meth:`mixed_batches` returns up to two batches for the student's loss:
    a Mixup batch (every strong view blended 1:1 with a cached view, the pseudo boxes and
    ignored boxes of both) and a Mosaic batch (``num_mosaics`` images of 4 cached views,
    each resized by a factor drawn from ``mosaic_scale``). Then the strong views join the
    cache. Nothing mixes until the cache holds ``cache_size`` views.

    Args:
        mixup (bool): make the Mixup batch. Default: True.
        mosaic (bool): make the Mosaic batch. Default: True.
        cache_size (int): cached views (MixPL: 8). Default: 8.
        mixup_ratio (float): the strong view's weight in a Mixup. Default: 0.5.
        mosaic_scale (tuple[float, float]): range of each mosaic view's resize factor
            (MixPL draws shapes of 400-800 px for 1333x800 training images: about 0.5-1).
            Default: (0.5, 1.0).
        num_mosaics (int): Mosaic images per batch. Default: 1.
        mixup_weight (float): the Mixup batch's loss weight, times the unlabeled weight.
            Default: 1.0.
        mosaic_weight (float): the Mosaic batch's loss weight, times the unlabeled weight
            (MixPL: 0.5). Default: 0.5.
        min_size (float): pseudo boxes a placement leaves narrower or shorter than this
            (pixels) are dropped. Default: 2.
        size_divisor (int): mosaic canvases are padded to a multiple of it. Default: 32.
        replace_strong (bool): MixPL's rule: once the cache is full, the Mixup batch (which
            holds every strong view, blended) takes the strong views' place in the loss,
            so the student does not also learn on the plain strong views. False adds the
            mixed batches to the strong views' loss. Without ``mixup`` the strong views
            always keep their loss. Default: True.
    """

    def __init__(self,
                 mixup: bool = True,
                 mosaic: bool = True,
                 cache_size: int = 8,
                 mixup_ratio: float = 0.5,
                 mosaic_scale: Tuple[float, float] = (0.5, 1.0),
                 num_mosaics: int = 1,
                 mixup_weight: float = 1.0,
                 mosaic_weight: float = 0.5,
                 min_size: float = 2.0,
                 size_divisor: int = 32,
                 replace_strong: bool = True) -> None:
        if cache_size < 4 and mosaic:
            raise ValueError(f'a mosaic needs 4 cached views; cache_size is {cache_size}')
        if cache_size < 1:
            raise ValueError(f'cache_size must be >= 1, got {cache_size}')
        if not 0.0 < mixup_ratio < 1.0:
            raise ValueError(f'mixup_ratio must be in (0, 1), got {mixup_ratio}')
        low, high = mosaic_scale
        if not 0.0 < low <= high:
            raise ValueError(f'mosaic_scale must be 0 < low <= high, got {mosaic_scale}')
        self.use_mixup, self.use_mosaic = bool(mixup), bool(mosaic)
        self.cache_size = int(cache_size)
        self.mixup_ratio = float(mixup_ratio)
        self.mosaic_scale = (float(low), float(high))
        self.num_mosaics = int(num_mosaics)
        self.weights = dict(mixup=float(mixup_weight), mosaic=float(mosaic_weight))
        self.min_size = float(min_size)
        self.size_divisor = int(size_divisor)
        self.replace_strong = bool(replace_strong)
        self.cache: deque = deque(maxlen=self.cache_size)
        self.num_dropped = 0  # pseudo boxes the last batches' placements dropped

    # ------------------------------------------------------------------ cache
    def push(self, inputs: Tensor, samples: Sequence[DetDataSample]) -> None:
        """Cache the strong views (their content, without the batch padding) with their
        pseudo and ignored instances, detached."""
        for image, sample in zip(inputs, samples):
            h, w = sample.img_shape[:2]
            self.cache.append((image[:, :h, :w].detach().clone(),
                               _detached(sample.gt_instances),
                               _detached(sample.ignored_instances)))

    @property
    def ready(self) -> bool:
        return len(self.cache) >= self.cache_size

    @property
    def replaces_strong(self) -> bool:
        """Whether this iteration's Mixup batch stands in for the strong views' loss."""
        return self.replace_strong and self.use_mixup and self.ready

    # ------------------------------------------------------------------ batches
    def mixed_batches(self, inputs: Tensor, samples: Sequence[DetDataSample]
                      ) -> List[Tuple[str, Tensor, List[DetDataSample]]]:
        """``[(name, inputs, samples)]`` of the Mixup and Mosaic batches (empty until the
        cache is full); the views of this batch are cached afterwards."""
        batches = []
        self.num_dropped = 0
        if self.ready:
            if self.use_mixup:
                batches.append(('mixup', ) + self.mixup_batch(inputs, samples))
            if self.use_mosaic:
                batches.append(('mosaic', ) + self.mosaic_batch(samples[0]))
        self.push(inputs, samples)
        return batches

    def mixup_batch(self, inputs: Tensor, samples: Sequence[DetDataSample]
                    ) -> Tuple[Tensor, List[DetDataSample]]:
        images, out = [], []
        cached = random.sample(list(self.cache), min(len(samples), len(self.cache)))
        while len(cached) < len(samples):
            cached.append(random.choice(self.cache))
        for image, sample, (src, src_gt, src_ignored) in zip(inputs, samples, cached):
            mixed, shape, matrix = mixup(image, sample.img_shape[:2], src, self.mixup_ratio)
            identity = placement(0.0, 0.0)
            gts, ignored = [], []
            for source, move, target in ((sample.gt_instances, identity, gts),
                                         (src_gt, matrix, gts),
                                         (sample.ignored_instances, identity, ignored),
                                         (src_ignored, matrix, ignored)):
                placed, dropped = place_instances(source, move, shape, self.min_size)
                target.append(placed)
                self.num_dropped += dropped
            images.append(mixed)
            out.append(self._sample(sample, shape, tuple(image.shape[-2:]),
                                    concat_instances(gts, shape, sample.gt_instances),
                                    concat_instances(ignored, shape,
                                                     sample.ignored_instances)))
        return torch.stack(images), out

    def mosaic_batch(self, like: DetDataSample) -> Tuple[Tensor, List[DetDataSample]]:
        canvases, out = [], []
        for _ in range(self.num_mosaics):
            views = random.sample(list(self.cache), 4)
            scales = [random.uniform(*self.mosaic_scale) for _ in views]
            canvas, shape, matrices = mosaic([v[0] for v in views], scales, self.size_divisor)
            pad = tuple(canvas.shape[-2:])
            gts, ignored = [], []
            for (_, gt, ign), matrix in zip(views, matrices):
                for source, target in ((gt, gts), (ign, ignored)):
                    placed, dropped = place_instances(source, matrix, shape, self.min_size)
                    target.append(placed)
                    self.num_dropped += dropped
            canvases.append(canvas)
            out.append(self._sample(like, shape, pad,
                                    concat_instances(gts, shape, views[0][1]),
                                    concat_instances(ignored, shape, views[0][2])))
        # mosaics of one batch may differ in size: pad them to the largest
        height = max(c.shape[-2] for c in canvases)
        width = max(c.shape[-1] for c in canvases)
        batch = canvases[0].new_zeros((len(canvases), canvases[0].shape[0], height, width))
        for i, canvas in enumerate(canvases):
            batch[i, :, :canvas.shape[-2], :canvas.shape[-1]] = canvas
        for sample in out:
            sample.set_metainfo(dict(batch_input_shape=(height, width)))
        return batch, out

    @staticmethod
    def _sample(like: DetDataSample, img_shape: Tuple[int, int], pad_shape: Tuple[int, int],
                gt: InstanceData, ignored: InstanceData) -> DetDataSample:
        """A data sample of a mixed image: its own shapes, the identity as its
        homography, no flip, scale 1 (it is nobody's resized original)."""
        meta = dict(img_shape=tuple(img_shape), ori_shape=tuple(img_shape),
                    pad_shape=tuple(pad_shape), batch_input_shape=tuple(pad_shape),
                    scale_factor=(1.0, 1.0), flip=False, flip_direction=None,
                    homography_matrix=torch.eye(3).numpy())
        for key in ('img_id', 'img_path'):
            if key in like:
                meta[key] = like.metainfo[key]
        sample = DetDataSample(metainfo=meta)
        gt.set_metainfo(dict(img_shape=tuple(img_shape)))
        ignored.set_metainfo(dict(img_shape=tuple(img_shape)))
        sample.gt_instances = gt
        sample.ignored_instances = ignored
        return sample


def _detached(instances: Optional[InstanceData]) -> InstanceData:
    if instances is None:
        return InstanceData(bboxes=torch.zeros((0, 4)), labels=torch.zeros(0, dtype=torch.long))
    out = InstanceData(metainfo=instances.metainfo)
    for key, value in instances.items():
        out[key] = value.detach() if isinstance(value, Tensor) else value
    return out
