"""Datasets, samplers and data checks for semi-supervised training."""
from . import transforms  # noqa: F401  (registers ssl_det's transforms)
from .coco import CocoDataset
from .multi_source_sampler import MultiSourceSampler
from .semi_checks import SemiSplitSummary, check_semi_split

__all__ = ['CocoDataset', 'MultiSourceSampler', 'check_semi_split', 'SemiSplitSummary']
