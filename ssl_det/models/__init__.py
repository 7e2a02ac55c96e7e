from . import detectors, pseudo_labels, utils  # noqa: F401
