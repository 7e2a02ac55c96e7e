"""mmcv's CPU NMS under bfloat16 autocast: ssl_det routes low-precision CPU boxes through
float32 (mmcv's CPU kernel is float32-only) and hands back the inputs' own values."""
import torch
from mmcv.ops import batched_nms

import ssl_det.models  # noqa: F401  (installs the float32 path)


def test_bfloat16_boxes_keep_what_float32_keeps():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=gen) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=gen) * 20], dim=1)
    scores = torch.rand(200, generator=gen)
    idxs = torch.randint(0, 3, (200,), generator=gen)
    cfg = dict(type='nms', iou_threshold=0.5)
    low_boxes, low_scores = boxes.bfloat16(), scores.bfloat16()
    dets, keep = batched_nms(low_boxes, low_scores, idxs, cfg)
    ref_dets, ref_keep = batched_nms(low_boxes.float(), low_scores.float(), idxs, cfg)
    assert torch.equal(keep, ref_keep) and 10 < len(keep) < 200
    assert dets.dtype == torch.bfloat16
    assert torch.equal(dets, ref_dets.bfloat16())
    assert torch.equal(dets[:, :4], low_boxes[keep])
