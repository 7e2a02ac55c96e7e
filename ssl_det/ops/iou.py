"""Box overlap ops: axis-aligned 2D IoU/IoF/GIoU (differentiable), rotated BEV IoU and 3D IoU.

Inputs are validated here and dispatched to ``ssl_det._ext`` by device (CPU: multi-threaded
C++; CUDA: kernels in ``csrc/cuda``). Non-contiguous inputs are made contiguous (a copy);
dtypes a device's kernel lacks (float16/bfloat16 on CPU, bfloat16 on CUDA for 2D; anything
but float32/float64 for rotated boxes) are computed in float32 and cast back.
"""
import torch
from torch.autograd.function import once_differentiable

from ._checks import (check_aligned, check_boxes, check_real, check_same_device_dtype,
                      kernel_dtype)
from ._ext_loader import load_ext

_ext = load_ext()

IOU_MODES = {'iou': 0, 'iof': 1, 'giou': 2}
_NATIVE_2D_CPU = (torch.float32, torch.float64)
_NATIVE_2D_CUDA = (torch.float32, torch.float64, torch.float16)
_NATIVE_ROTATED = (torch.float32, torch.float64)


class _BBoxOverlaps(torch.autograd.Function):
    """Autograd wrapper: forward and backward both run in the compiled kernels."""

    @staticmethod
    def forward(ctx, a, b, mode: int, aligned: bool, eps: float):
        ctx.save_for_backward(a, b)
        ctx.mode, ctx.aligned, ctx.eps = mode, aligned, eps
        return _ext.bbox_overlaps(a, b, mode, aligned, eps)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a, grad_b = _ext.bbox_overlaps_backward(grad.contiguous(), a, b, ctx.mode,
                                                     ctx.aligned, ctx.eps)
        return (grad_a if ctx.needs_input_grad[0] else None,
                grad_b if ctx.needs_input_grad[1] else None, None, None, None)


def bbox_overlaps(a: torch.Tensor, b: torch.Tensor, mode: str = 'iou', aligned: bool = False,
                  eps: float = 1e-6) -> torch.Tensor:
    """Overlaps of axis-aligned boxes, as mmdet's ``bbox_overlaps`` computes them.

    ``union = max(area_a + area_b - overlap, eps)`` (``iof``: ``max(area_a, eps)``) and
    ``giou = iou - (E - union) / E`` with ``E = max(enclosing area, eps)``. Areas are not
    clamped, so boxes with x2 < x1 give negative areas, as in mmdet.

    Differentiable w.r.t. both inputs (the backward is a compiled kernel; on ties of min/max
    the gradient is split evenly, as torch.minimum/maximum split it).

    Args:
        a (Tensor): (N, 4) boxes (x1, y1, x2, y2); float32/float64 (float16 on CUDA).
        b (Tensor): (M, 4) boxes, same device and dtype as ``a``.
        mode (str): ``'iou'``, ``'iof'`` (intersection over ``a``'s area) or ``'giou'``.
            Defaults to ``'iou'``.
        aligned (bool): if True, overlaps of the pairs (a[i], b[i]) (needs N == M).
            Defaults to False.
        eps (float): floor of the union (and enclosing area). Defaults to 1e-6.

    Returns:
        Tensor: (N, M), or (N,) if ``aligned``, in ``a``'s dtype.
    """
    op = 'bbox_overlaps'
    if not isinstance(mode, str) or mode not in IOU_MODES:
        raise ValueError(f"{op}: `mode` must be one of 'iou', 'iof', 'giou', got {mode!r}")
    check_boxes(op, 'a', a, (4,), '4: x1, y1, x2, y2')
    check_boxes(op, 'b', b, (4,), '4: x1, y1, x2, y2')
    check_same_device_dtype(op, a, b)
    check_aligned(op, a, b, aligned)
    eps = check_real(op, 'eps', eps, minimum=0.0)
    dtype = kernel_dtype(a, _NATIVE_2D_CPU, _NATIVE_2D_CUDA)
    ka, kb = a.to(dtype).contiguous(), b.to(dtype).contiguous()
    if torch.is_grad_enabled() and (ka.requires_grad or kb.requires_grad):
        out = _BBoxOverlaps.apply(ka, kb, IOU_MODES[mode], aligned, eps)
    else:
        out = _ext.bbox_overlaps(ka, kb, IOU_MODES[mode], aligned, eps)
    return out.to(a.dtype)


def _rotated(op: str, a, b, aligned: bool, eps, cols, layout: str, with_height: bool):
    check_boxes(op, 'a', a, cols, layout)
    check_boxes(op, 'b', b, cols, layout)
    check_same_device_dtype(op, a, b)
    check_aligned(op, a, b, aligned)
    eps = check_real(op, 'eps', eps, minimum=0.0)
    dtype = kernel_dtype(a, _NATIVE_ROTATED, _NATIVE_ROTATED)
    with torch.no_grad():
        out = _ext.rotated_iou(a.detach().to(dtype).contiguous(), b.detach().to(dtype).contiguous(),
                               aligned, with_height, eps)
    return out.to(a.dtype)


def rotated_iou_bev(a: torch.Tensor, b: torch.Tensor, aligned: bool = False,
                    eps: float = 1e-6) -> torch.Tensor:
    """IoU of rotated boxes seen from above (exact convex-polygon intersection).

    A box is ``(x, y, w, l, yaw)`` or a 3D box ``(x, y, z, dx, dy, dz, yaw)`` (its BEV
    footprint is then ``(x, y, dx, dy, yaw)``; the two kinds may be mixed). ``w``/``dx``
    lies along the box's local x axis, ``l``/``dy`` along its local y axis, and ``yaw`` is
    counter-clockwise from +x: corners are the local corners rotated by
    ``[[cos, -sin], [sin, cos]]``, which is mmcv's ``box_iou_rotated(x, y, w, h, angle)``
    convention. IoU = intersection / max(union, eps); a box with w * l <= 0 has IoU 0.
    Computed in float64 internally. Not differentiable: the result is detached.

    Args:
        a (Tensor): (N, 5) or (N, 7) boxes, float32/float64.
        b (Tensor): (M, 5) or (M, 7) boxes, same device and dtype as ``a``.
        aligned (bool): if True, IoU of the pairs (a[i], b[i]). Defaults to False.
        eps (float): floor of the union. Defaults to 1e-6.

    Returns:
        Tensor: (N, M), or (N,) if ``aligned``, in ``a``'s dtype.
    """
    return _rotated('rotated_iou_bev', a, b, aligned, eps, (5, 7),
                    '5: x, y, w, l, yaw) or (N, 7: x, y, z, dx, dy, dz, yaw', with_height=False)


def overlaps_bev(boxes: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """(N,) bool: whether each of ``boxes`` overlaps any of ``others`` seen from above
    (rotated BEV IoU > 0, computed in float64); all False when ``others`` is empty."""
    if len(boxes) == 0 or len(others) == 0:
        return torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    return (rotated_iou_bev(boxes.double(), others.double()) > 0).any(dim=1)


def iou_3d(a: torch.Tensor, b: torch.Tensor, aligned: bool = False,
           eps: float = 1e-6) -> torch.Tensor:
    """3D IoU of yaw-rotated boxes ``(x, y, z, dx, dy, dz, yaw)``, ``z`` the box centre.

    Intersection = BEV intersection area x overlap of the z ranges [z - dz/2, z + dz/2];
    IoU = intersection / max(volume_a + volume_b - intersection, eps). Conventions as in
    :func:`rotated_iou_bev`. Not differentiable: the result is detached.

    Args:
        a (Tensor): (N, 7) boxes, float32/float64.
        b (Tensor): (M, 7) boxes, same device and dtype as ``a``.
        aligned (bool): if True, IoU of the pairs (a[i], b[i]). Defaults to False.
        eps (float): floor of the union volume. Defaults to 1e-6.

    Returns:
        Tensor: (N, M), or (N,) if ``aligned``, in ``a``'s dtype.
    """
    return _rotated('iou_3d', a, b, aligned, eps, (7,), '7: x, y, z, dx, dy, dz, yaw',
                    with_height=True)
