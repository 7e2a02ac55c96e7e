"""mmcv's NMS on the CPU: a faster kernel with the same results, and low-precision boxes.

**Faster.** mmcv's CPU NMS kernel reads every box through the score order and branches on
each suppressed one, so its inner loop runs one box at a time; in a CPU Faster R-CNN step
the RPN's NMS over a few thousand proposals per image is a noticeable share. :func:`nms`
(``ssl_det._ext``, ``csrc/cpu/nms.cpp``) returns exactly mmcv's kept indices, computed
with mmcv's float32 operations on boxes gathered in score order, vectorised.
:func:`use_fast_cpu_nms` makes mmcv's ``nms`` (and so ``batched_nms`` and every mmdet head
that calls it) use it for float32 CPU tensors; everything else (CUDA tensors, other dtypes,
``soft_nms``, rotated NMS) still goes to mmcv's kernels. ``tools/train.py`` and
``tools/test.py`` install it unless the config says ``fast_nms = False``.

**Low precision.**
Under CPU autocast (bfloat16) mmdet decodes its proposals and detections in bfloat16 (the
anchors take the feature maps' dtype and ``exp`` stays in bfloat16 on the CPU), but mmcv's
CPU NMS kernel accepts only float32 and raises ``expected scalar type Float but found
BFloat16``. :func:`patch_mmcv_cpu_nms` makes mmcv's ``nms`` (which ``batched_nms`` calls
through its module) compute the kept indices of such boxes in float32; the boxes and scores
it returns are the inputs' own values, in the inputs' dtype. float32 inputs and CUDA
tensors go to mmcv untouched.
"""
import functools
import importlib

import torch

from ._checks import check_boxes, check_real
from ._ext_loader import load_ext

_ext = load_ext()
_LOW = (torch.bfloat16, torch.float16)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
        offset: int = 0) -> torch.Tensor:
    """Greedy NMS of axis-aligned boxes on the CPU with mmcv 2.1's results: the indices of
    the kept boxes, in descending score order (ties broken as ``scores.sort`` does).

    Args:
        boxes: (N, 4) x1, y1, x2, y2, float32 on the CPU.
        scores: (N,) float32.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scored box exceeds it.
        offset: 0, or 1 for mmcv's legacy pixel convention (width = x2 - x1 + 1).

    Returns:
        int64 tensor of kept indices into ``boxes``.
    """
    op = 'ssl_det.ops.nms'
    check_boxes(op, 'boxes', boxes, (4,), '4: x1, y1, x2, y2')
    if not isinstance(scores, torch.Tensor) or scores.shape != boxes.shape[:1]:
        raise ValueError(f'{op}: `scores` must be a tensor of shape ({boxes.shape[0]},), got '
                         f'{tuple(scores.shape) if isinstance(scores, torch.Tensor) else scores!r}')
    if boxes.device.type != 'cpu' or scores.device.type != 'cpu':
        raise ValueError(f'{op}: CPU tensors only (mmcv.ops.nms runs CUDA ones); got '
                         f'{boxes.device} and {scores.device}')
    if boxes.dtype != torch.float32 or scores.dtype != torch.float32:
        raise TypeError(f"{op}: `boxes` and `scores` must be float32 (as mmcv's CPU kernel), "
                        f'got {boxes.dtype} and {scores.dtype}')
    iou_threshold = check_real(op, 'iou_threshold', iou_threshold)
    if offset not in (0, 1) or isinstance(offset, bool):
        raise ValueError(f'{op}: `offset` must be 0 or 1, got {offset!r}')
    return _ext.nms(boxes, scores, iou_threshold, int(offset))


class _FastCPUNMSExt:
    """Stands in for mmcv.ops.nms's ``ext_module``: its ``nms`` runs :func:`nms` on float32
    CPU tensors (the only inputs mmcv's CPU kernel accepts) and mmcv's kernel otherwise; every
    other attribute is mmcv's."""

    def __init__(self, mmcv_ext):
        self._mmcv_ext = mmcv_ext

    def nms(self, boxes, scores, iou_threshold, offset):
        if (boxes.device.type == 'cpu' and boxes.dtype == torch.float32
                and scores.dtype == torch.float32 and boxes.dim() == 2
                and boxes.shape[1] == 4):
            return _ext.nms(boxes, scores, float(iou_threshold), int(offset))
        return self._mmcv_ext.nms(boxes, scores, iou_threshold=iou_threshold, offset=offset)

    def __getattr__(self, name):
        return getattr(self._mmcv_ext, name)


def use_fast_cpu_nms(enable: bool = True) -> bool:
    """Makes ``mmcv.ops.nms`` (hence ``batched_nms``) run :func:`nms` for float32 CPU
    tensors, or with ``enable=False`` gives mmcv its own kernel back. Idempotent; affects the
    whole process. Returns whether the fast kernel is installed afterwards."""
    mmcv_nms = importlib.import_module('mmcv.ops.nms')
    current = mmcv_nms.ext_module
    installed = isinstance(current, _FastCPUNMSExt)
    if enable and not installed:
        mmcv_nms.ext_module = _FastCPUNMSExt(current)
    elif not enable and installed:
        mmcv_nms.ext_module = current._mmcv_ext
    return enable


def patch_mmcv_cpu_nms() -> None:
    """Install the float32 path in ``mmcv.ops.nms.nms`` (idempotent)."""
    # the module (``mmcv.ops.nms`` as an attribute is the function of the same name)
    mmcv_nms = importlib.import_module('mmcv.ops.nms')
    original = mmcv_nms.nms
    if getattr(original, '_ssl_det_float32_cpu', False):
        return

    @functools.wraps(original)
    def nms(boxes, scores, iou_threshold, offset=0, score_threshold=0, max_num=-1):
        low = (isinstance(boxes, torch.Tensor) and boxes.device.type == 'cpu'
               and (boxes.dtype in _LOW or scores.dtype in _LOW))
        if not low:
            return original(boxes, scores, iou_threshold, offset, score_threshold, max_num)
        _, inds = original(boxes.float(), scores.float(), iou_threshold, offset,
                           score_threshold, max_num)
        dets = torch.cat((boxes[inds], scores[inds].reshape(-1, 1).to(boxes.dtype)), dim=1)
        return dets, inds

    nms._ssl_det_float32_cpu = True
    mmcv_nms.nms = nms
