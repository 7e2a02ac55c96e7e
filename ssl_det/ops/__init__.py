"""ssl_det's compiled ops: box overlaps (2D, rotated BEV, 3D), Soft Teacher's box jitter and a
multi-threaded CPU RoIAlign with mmcv's maths (a drop-in for mmcv.ops.RoIAlign) and a
vectorised CPU NMS with mmcv's results (installed into mmcv.ops.nms by use_fast_cpu_nms).

Each op validates its arguments and dispatches by device to ``ssl_det._ext`` (C++ on the
CPU, CUDA kernels on the GPU; RoIAlign hands CUDA tensors to mmcv);
``ssl_det.ops.reference`` holds a pure-torch version of each for tests (RoIAlign is tested
against mmcv instead). Importing this package raises ImportError, with the rebuild command,
when the extension was not built. It imports only torch, so it works with
``SSL_DET_OPS_ONLY=1`` on a host without OpenMMLab (RoIAlign imports mmcv only for CUDA
tensors and max pooling).
"""
from .iou import IOU_MODES, bbox_overlaps, iou_3d, overlaps_bev, rotated_iou_bev
from .jitter import box_jitter, box_jitter_with_noise, jitter_noise, jitter_uncertainty
from .nms import nms, use_fast_cpu_nms
from .roi_align import RoIAlign, replace_roi_align, roi_align

__all__ = [
    'IOU_MODES', 'bbox_overlaps', 'rotated_iou_bev', 'overlaps_bev', 'iou_3d', 'box_jitter',
    'box_jitter_with_noise', 'jitter_noise', 'jitter_uncertainty', 'roi_align', 'RoIAlign',
    'replace_roi_align', 'nms', 'use_fast_cpu_nms', 'cuda_available'
]


def cuda_available() -> bool:
    """Whether the extension was compiled with its CUDA kernels."""
    from .iou import _ext
    return bool(_ext.with_cuda())
