from ssl_det.ops.nms import patch_mmcv_cpu_nms

from . import detectors, point_cloud, pseudo_labels, soft_teacher, utils  # noqa: F401

patch_mmcv_cpu_nms()  # bfloat16 boxes under CPU autocast (mmcv's CPU kernel is float32-only)
