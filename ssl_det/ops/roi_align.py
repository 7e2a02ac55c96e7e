"""RoIAlign with mmcv 2.1's maths and a multi-threaded CPU kernel: a drop-in for
``mmcv.ops.roi_align`` / ``mmcv.ops.RoIAlign``.

mmcv's CPU RoIAlign runs on one thread and its backward walks the output element by element;
in a CPU detector step it is most of the time. Here, on the CPU, average pooling runs in
``ssl_det._ext`` (see ``csrc/cpu/roi_align.cpp``): same sample points, weights, clamping
and order of summation as mmcv, so the forward is bitwise mmcv's and so is the gradient
(every gradient element receives mmcv's terms in mmcv's order), for any number of threads.
CUDA tensors and ``pool_mode='max'`` go to mmcv's own kernels (mmcv is imported only then,
so this module needs torch alone).

To use it in an mmdet model: :func:`replace_roi_align` swaps the mmcv layers of a built
model, or a config names the class, ``roi_layer=dict(type=ssl_det.ops.RoIAlign, ...)``
(mmdet's RoI extractors accept a class as ``type``).
"""
from numbers import Integral
from typing import Tuple, Union

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ._checks import check_boxes, check_int, check_real
from ._ext_loader import load_ext

_ext = load_ext()

POOL_MODES = ('avg', 'max')


def _output_size(op: str, output_size) -> Tuple[int, int]:
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f'{op}: `output_size` must be an int or a pair (h, w), got '
                             f'{output_size!r}')
        return (check_int(op, 'output_size[0]', output_size[0], minimum=1),
                check_int(op, 'output_size[1]', output_size[1], minimum=1))
    size = check_int(op, 'output_size', output_size, minimum=1)
    return size, size


def _check_args(op, input, rois, output_size, spatial_scale, sampling_ratio, pool_mode,
                aligned):
    if not isinstance(input, torch.Tensor):
        raise TypeError(f'{op}: `input` must be a torch.Tensor, got {type(input).__name__}')
    if not input.is_floating_point():
        raise TypeError(f'{op}: `input` must be a floating-point tensor, got {input.dtype}')
    if input.dim() != 4:
        raise ValueError(f'{op}: `input` must have shape (N, C, H, W), got '
                         f'{tuple(input.shape)}')
    check_boxes(op, 'rois', rois, (5,), '5: batch index, x1, y1, x2, y2')
    if rois.device != input.device:
        raise ValueError(f'{op}: `rois` is on {rois.device} but `input` on {input.device}; '
                         'move both to the same device')
    size = _output_size(op, output_size)
    scale = check_real(op, 'spatial_scale', spatial_scale)
    if not scale > 0:
        raise ValueError(f'{op}: `spatial_scale` must be > 0, got {spatial_scale}')
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, Integral):
        raise TypeError(f'{op}: `sampling_ratio` must be an int, got '
                        f'{type(sampling_ratio).__name__}')
    if pool_mode not in POOL_MODES:
        raise ValueError(f'{op}: `pool_mode` must be one of {POOL_MODES}, got {pool_mode!r}')
    if not isinstance(aligned, bool):
        raise TypeError(f'{op}: `aligned` must be a bool, got {type(aligned).__name__}')
    return size, scale, int(sampling_ratio)


class _RoIAlignCPU(torch.autograd.Function):
    """Average-pooling RoIAlign on the CPU; forward and backward in the compiled kernel.
    ``input`` and ``rois`` arrive in the kernel's dtype (float32 or float64)."""

    @staticmethod
    def forward(ctx, input, rois, out_h: int, out_w: int, spatial_scale: float,
                sampling_ratio: int, aligned: bool):
        ctx.save_for_backward(rois)
        ctx.input_shape = tuple(input.shape)
        ctx.params = (spatial_scale, sampling_ratio, aligned)
        return _ext.roi_align_forward(input, rois, out_h, out_w, spatial_scale, sampling_ratio,
                                      aligned)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        rois, = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            grad_input = _ext.roi_align_backward(grad.to(rois.dtype).contiguous(), rois,
                                                 *ctx.input_shape, *ctx.params)
        return grad_input, None, None, None, None, None, None


def roi_align(input: torch.Tensor, rois: torch.Tensor,
              output_size: Union[int, Tuple[int, int]], spatial_scale: float = 1.0,
              sampling_ratio: int = 0, pool_mode: str = 'avg',
              aligned: bool = True) -> torch.Tensor:
    """RoIAlign, as ``mmcv.ops.roi_align`` computes it (same arguments, same values).

    Bin (i, j) of RoI k averages ``grid_h x grid_w`` bilinear samples of its image's
    features, ``grid = sampling_ratio`` if > 0, else ``ceil(bin size)`` per axis (adaptive).
    The RoI is scaled by ``spatial_scale`` (rounded to float32, as mmcv does) and, when
    ``aligned``, shifted by -0.5 pixel; with ``aligned=False`` its size is raised to at least
    1 (mmcv's legacy behaviour), with ``aligned=True`` x2 < x1 or y2 < y1 is an error.
    Samples beyond one pixel outside the map count as 0.

    Differentiable w.r.t. ``input`` (``rois`` get no gradient). On the CPU average pooling
    runs in ssl_det's multi-threaded kernel (float32 and float64; float16/bfloat16 are
    computed in float32 and cast back); CUDA tensors and ``pool_mode='max'`` are handed to
    ``mmcv.ops.roi_align``.

    Args:
        input (Tensor): (N, C, H, W) features.
        rois (Tensor): (K, 5) RoIs ``(batch index, x1, y1, x2, y2)`` in input-image pixels,
            in any order; a floating-point tensor on ``input``'s device (cast to the dtype
            the kernel computes in).
        output_size (int or tuple): (h, w) bins per RoI, or one int for both.
        spatial_scale (float): feature-map size over image size (1 / stride), > 0.
        sampling_ratio (int): samples per bin along each axis; <= 0 picks them adaptively
            (mmcv's and detectron2's 0).
        pool_mode (str): ``'avg'`` (ssl_det's kernel on the CPU) or ``'max'`` (mmcv's).
        aligned (bool): detectron2's half-pixel alignment. Defaults to True.

    Returns:
        Tensor: (K, C, h, w) in ``input``'s dtype.
    """
    op = 'roi_align'
    (out_h, out_w), scale, sampling_ratio = _check_args(op, input, rois, output_size,
                                                        spatial_scale, sampling_ratio,
                                                        pool_mode, aligned)
    if input.is_cuda or pool_mode == 'max':
        try:
            from mmcv.ops import roi_align as mmcv_roi_align
        except ImportError as err:
            where = 'CUDA tensors' if input.is_cuda else "pool_mode='max'"
            raise RuntimeError(f'{op}: {where} need mmcv.ops.roi_align, which does not import '
                               f'here ({err}); ssl_det has a CPU average-pooling kernel only'
                               ) from err
        return mmcv_roi_align(input, rois.to(input.dtype), (out_h, out_w), scale,
                              sampling_ratio, pool_mode, aligned)
    dtype = input.dtype if input.dtype in (torch.float32, torch.float64) else torch.float32
    out = _RoIAlignCPU.apply(input.to(dtype), rois.detach().to(dtype).contiguous(), out_h,
                             out_w, scale, sampling_ratio, aligned)
    return out.to(input.dtype)


class RoIAlign(nn.Module):
    """Drop-in for ``mmcv.ops.RoIAlign``: same constructor, attributes and ``repr``;
    ``forward(input, rois)`` is :func:`roi_align` with the stored settings.

    Args:
        output_size (int or tuple): (h, w) bins per RoI.
        spatial_scale (float): scale of the RoIs onto the feature map. Defaults to 1.0.
        sampling_ratio (int): samples per bin along each axis, 0 for adaptive.
        pool_mode (str): ``'avg'`` or ``'max'`` (the latter runs mmcv's kernel).
        aligned (bool): half-pixel alignment. Defaults to True.
        use_torchvision (bool): run ``torchvision.ops.roi_align`` instead, as mmcv's module
            does. Defaults to False.
    """

    def __init__(self,
                 output_size: Union[int, Tuple[int, int]],
                 spatial_scale: float = 1.0,
                 sampling_ratio: int = 0,
                 pool_mode: str = 'avg',
                 aligned: bool = True,
                 use_torchvision: bool = False):
        super().__init__()
        op = 'RoIAlign'
        self.output_size = _output_size(op, output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        if pool_mode not in POOL_MODES:
            raise ValueError(f'{op}: `pool_mode` must be one of {POOL_MODES}, got '
                             f'{pool_mode!r}')
        self.pool_mode = pool_mode
        self.aligned = aligned
        self.use_torchvision = use_torchvision

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input (Tensor): (N, C, H, W) features.
            rois (Tensor): (K, 5) RoIs ``(batch index, x1, y1, x2, y2)``.
        """
        if self.use_torchvision:
            from torchvision.ops import roi_align as tv_roi_align
            return tv_roi_align(input, rois, self.output_size, self.spatial_scale,
                                self.sampling_ratio, self.aligned)
        return roi_align(input, rois, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.pool_mode, self.aligned)

    def __repr__(self):
        s = self.__class__.__name__
        s += f'(output_size={self.output_size}, '
        s += f'spatial_scale={self.spatial_scale}, '
        s += f'sampling_ratio={self.sampling_ratio}, '
        s += f'pool_mode={self.pool_mode}, '
        s += f'aligned={self.aligned}, '
        s += f'use_torchvision={self.use_torchvision})'
        return s


def replace_roi_align(model: nn.Module) -> int:
    """Replaces every ``mmcv.ops.RoIAlign`` inside ``model`` (e.g. in
    ``model.roi_head.bbox_roi_extractor.roi_layers`` and mask extractors) by an ssl_det
    :class:`RoIAlign` with the same settings and training mode, in place.

    Returns:
        int: the number of layers replaced; 0 when mmcv.ops does not import (then the model
        cannot hold mmcv layers).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f'replace_roi_align: `model` must be an nn.Module, got '
                        f'{type(model).__name__}')
    try:
        from mmcv.ops import RoIAlign as MMCVRoIAlign
    except ImportError:
        return 0
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, MMCVRoIAlign) and not isinstance(child, RoIAlign):
                layer = RoIAlign(child.output_size, child.spatial_scale, child.sampling_ratio,
                                 child.pool_mode, child.aligned, child.use_torchvision)
                layer.train(child.training)
                setattr(parent, name, layer)
                replaced += 1
    return replaced
