from . import detectors, pseudo_labels, soft_teacher, utils  # noqa: F401
