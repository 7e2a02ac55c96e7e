"""Soft Teacher's box-jitter uncertainty as two fused ops: jitter the pseudo boxes, then score
how much the teacher's refinements of the jittered copies disagree.

Layout: ssl_det is box-major. ``box_jitter`` returns the ``times`` jittered copies of box 0,
then those of box 1, ... (row ``n * times + t``), and ``jitter_uncertainty`` reads that
layout. mmdet's ``SoftTeacher.aug_box`` is times-major (its output is ``(times, N, 4)``,
flattened to row ``t * N + n``). With the same noise the two agree up to that reordering:
``ours.view(N, times, K)[:, :, :4] == mmdet_out.transpose(0, 1)``.
"""
from typing import Optional

import torch

from ._checks import check_boxes, check_int, check_real, kernel_dtype
from ._ext_loader import load_ext

_ext = load_ext()

_NATIVE_CPU = (torch.float32, torch.float64)
_NATIVE_CUDA = (torch.float32, torch.float64, torch.float16)


def jitter_noise(boxes: torch.Tensor, times: int,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The only random draw of :func:`box_jitter`.

    ``torch.randn((times, N, 4), generator=generator, device=boxes.device,
    dtype=torch.float32)``: the same call, shape and dtype as mmdet's ``aug_box``
    (``torch.randn(times, N, 4, device=...)``), so from the same generator state both draw
    the same numbers.
    """
    return torch.randn((times, boxes.shape[0], 4), generator=generator, device=boxes.device,
                       dtype=torch.float32)


def box_jitter(boxes: torch.Tensor, times: int, scale: float,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Jitters every box ``times`` times with Gaussian noise (Soft Teacher's ``aug_box``).

    ``out[n * times + t, c] = boxes[n, c] + noise[t, n, c] * (size_c * scale)`` for the
    four coordinates, where ``size`` is the box width for x1/x2 and its height for y1/y2,
    each clamped to at least 1, and ``noise = jitter_noise(boxes, times, generator)``.
    Columns after the fourth (e.g. a score) are copied unchanged.

    Args:
        boxes (Tensor): (N, K) boxes, K >= 4, (x1, y1, x2, y2, extra...).
        times (int): jittered copies per box (mmdet's ``jitter_times``), >= 1.
        scale (float): noise std as a fraction of the box size (mmdet's ``jitter_scale``).
        generator (torch.Generator, optional): source of the noise; None uses torch's
            default generator, exactly as mmdet does.

    Returns:
        Tensor: (N * times, K), box-major, in ``boxes``' dtype.
    """
    op = 'box_jitter'
    check_boxes(op, 'boxes', boxes, 4, 'K>=4: x1, y1, x2, y2, ...')
    times = check_int(op, 'times', times, minimum=1)
    return box_jitter_with_noise(boxes, jitter_noise(boxes, times, generator), scale)


def box_jitter_with_noise(boxes: torch.Tensor, noise: torch.Tensor,
                          scale: float) -> torch.Tensor:
    """:func:`box_jitter` with the standard-normal noise given.

    Args:
        boxes (Tensor): (N, K) boxes, K >= 4.
        noise (Tensor): (times, N, 4) standard-normal draws, mmdet's layout; any float dtype
            (it is cast to the dtype the kernel computes in: float64 for float64 boxes,
            float32 otherwise), on ``boxes``' device.
        scale (float): noise std as a fraction of the box size.

    Returns:
        Tensor: (N * times, K), box-major, in ``boxes``' dtype.
    """
    op = 'box_jitter'
    check_boxes(op, 'boxes', boxes, 4, 'K>=4: x1, y1, x2, y2, ...')
    if not isinstance(noise, torch.Tensor) or not noise.is_floating_point():
        raise TypeError(f'{op}: `noise` must be a floating-point torch.Tensor')
    if noise.dim() != 3 or noise.shape[1:] != (boxes.shape[0], 4):
        raise ValueError(f'{op}: `noise` must have shape (times, N={boxes.shape[0]}, 4), '
                         f'got {tuple(noise.shape)}')
    if noise.device != boxes.device:
        raise ValueError(f'{op}: `noise` is on {noise.device} but `boxes` on {boxes.device}')
    scale = check_real(op, 'scale', scale, minimum=0.0)
    dtype = kernel_dtype(boxes, _NATIVE_CPU, _NATIVE_CUDA)
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    out = _ext.box_jitter(boxes.detach().to(dtype).contiguous(),
                          noise.to(compute).contiguous(), scale)
    return out.to(boxes.dtype)


def jitter_uncertainty(refined: torch.Tensor, labels: Optional[torch.Tensor],
                       times: int) -> torch.Tensor:
    """Uncertainty of each pseudo box from the teacher's refinements of its jittered copies.

    Soft Teacher's ``compute_uncertainty_with_aug`` after the teacher's RoI head, in one
    pass over all boxes of all images: for box n take the label's 4 columns of its ``times``
    refined copies; per coordinate the unbiased std (``torch.std``'s default) over the
    copies; divide by the width (x1, x2) or height (y1, y2) of the mean refined box, clamped
    to at least 1; average the four ratios.

    Args:
        refined (Tensor): box-major refined boxes, (N * times, 4C) or (N, times, 4C): C = 1
            for class-agnostic regression, else one (x1, y1, x2, y2) per class.
        labels (Tensor or None): (N,) integer labels in [0, C); may be None when C == 1
            (then ignored).
        times (int): jittered copies per box, >= 2 (an unbiased std needs two).

    Returns:
        Tensor: (N,) uncertainties in ``refined``'s dtype.
    """
    op = 'jitter_uncertainty'
    if not isinstance(refined, torch.Tensor) or not refined.is_floating_point():
        raise TypeError(f'{op}: `refined` must be a floating-point torch.Tensor')
    times = check_int(op, 'times', times, minimum=2)
    shape = tuple(refined.shape)
    if refined.dim() == 3:
        if shape[1] != times:
            raise ValueError(f'{op}: `refined` of shape (N, times, 4C) must have times={times} '
                             f'in dim 1, got {shape}')
        refined = refined.reshape(shape[0] * times, shape[2])
    if refined.dim() != 2 or refined.shape[1] == 0 or refined.shape[1] % 4 != 0 \
            or refined.shape[0] % times != 0:
        raise ValueError(f'{op}: `refined` must have shape (N * times, 4C) or (N, times, 4C) '
                         f'with times={times}, got {shape}')
    n, channels = refined.shape[0] // times, refined.shape[1] // 4
    if labels is None:
        if channels != 1:
            raise ValueError(f'{op}: `labels` is required for class-specific boxes '
                             f'(C={channels} classes in `refined`)')
        labels = refined.new_empty(0, dtype=torch.long)
    else:
        if not isinstance(labels, torch.Tensor) or labels.is_floating_point() \
                or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f'{op}: `labels` must be an integer torch.Tensor')
        if labels.shape != (n,):
            raise ValueError(f'{op}: `labels` must have shape (N={n},), got {tuple(labels.shape)}')
        if labels.device != refined.device:
            raise ValueError(f'{op}: `labels` is on {labels.device} but `refined` on '
                             f'{refined.device}')
        if channels > 1 and n > 0:
            lo, hi = (v.item() for v in torch.aminmax(labels))
            if lo < 0 or hi >= channels:
                raise ValueError(f'{op}: `labels` must lie in [0, {channels}), got values in '
                                 f'[{lo}, {hi}]')
        labels = labels.to(torch.long).contiguous()
    dtype = kernel_dtype(refined, _NATIVE_CPU, _NATIVE_CUDA)
    with torch.no_grad():
        out = _ext.jitter_uncertainty(refined.to(dtype).contiguous(), labels, times)
    return out.to(refined.dtype)
