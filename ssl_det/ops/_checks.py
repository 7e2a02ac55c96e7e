"""Argument checks shared by the op wrappers: clear TypeError/ValueError naming the argument."""
from numbers import Integral, Real
from typing import Optional, Tuple, Union

import torch


def check_boxes(op: str, name: str, t, cols: Union[Tuple[int, ...], int], layout: str) -> None:
    """Checks that ``t`` is a floating tensor of shape (N, c), c in ``cols`` (a tuple) or
    c >= ``cols`` (an int).

    ``layout`` names the columns in the message, e.g. ``'4: x1, y1, x2, y2'``.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f'{op}: `{name}` must be a torch.Tensor, got {type(t).__name__}')
    if not t.is_floating_point():
        raise TypeError(f'{op}: `{name}` must be a floating-point tensor, got {t.dtype}')
    ok = t.dim() == 2 and (t.shape[1] >= cols if isinstance(cols, int) else t.shape[1] in cols)
    if not ok:
        raise ValueError(f'{op}: `{name}` must have shape (N, {layout}), got {tuple(t.shape)}')


def check_same_device_dtype(op: str, a: torch.Tensor, b: torch.Tensor, names=('a', 'b')) -> None:
    if a.device != b.device:
        raise ValueError(f'{op}: `{names[0]}` is on {a.device} but `{names[1]}` is on {b.device}; '
                         'move both to the same device')
    if a.dtype != b.dtype:
        raise TypeError(f'{op}: `{names[0]}` is {a.dtype} but `{names[1]}` is {b.dtype}; '
                        'cast both to the same dtype')


def check_aligned(op: str, a: torch.Tensor, b: torch.Tensor, aligned) -> None:
    if not isinstance(aligned, bool):
        raise TypeError(f'{op}: `aligned` must be a bool, got {type(aligned).__name__}')
    if aligned and a.shape[0] != b.shape[0]:
        raise ValueError(f'{op}: aligned=True needs as many rows in `a` as in `b`, got '
                         f'{a.shape[0]} and {b.shape[0]}')


def check_real(op: str, name: str, value, minimum: Optional[float] = None) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f'{op}: `{name}` must be a real number, got {type(value).__name__}')
    if minimum is not None and not value >= minimum:
        raise ValueError(f'{op}: `{name}` must be >= {minimum}, got {value}')
    return float(value)


def check_int(op: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f'{op}: `{name}` must be an int, got {type(value).__name__}')
    if value < minimum:
        raise ValueError(f'{op}: `{name}` must be >= {minimum}, got {value}')
    return int(value)


def kernel_dtype(t: torch.Tensor, native_cpu: Tuple[torch.dtype, ...],
                 native_cuda: Tuple[torch.dtype, ...]) -> torch.dtype:
    """The dtype a kernel runs in: ``t``'s own if the device's kernel has it, else float32."""
    native = native_cuda if t.is_cuda else native_cpu
    return t.dtype if t.dtype in native else torch.float32
