from . import detectors, point_cloud, pseudo_labels, soft_teacher, utils  # noqa: F401
