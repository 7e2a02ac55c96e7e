"""mmcv's NMS for low-precision boxes on the CPU.

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

_LOW = (torch.bfloat16, torch.float16)


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
