"""Evaluation: KITTI-style BEV/3D average precision of rotated 3D boxes (``Box3DAPMetric``)."""
from .ap3d import AP3DResult, class_mean, eval_ap3d, frame_ious, greedy_match, interpolated_ap
from .box3d_metric import Box3DAPMetric

__all__ = [
    'AP3DResult', 'class_mean', 'eval_ap3d', 'frame_ious', 'greedy_match', 'interpolated_ap',
    'Box3DAPMetric'
]
