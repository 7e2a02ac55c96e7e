"""Pseudo-label policies: turn teacher detections into confident, ignored and dropped ones."""
from .base import BaseThresholdPolicy, PseudoLabelSplit
from .dual_threshold import DualThreshold
from .dynamic_threshold import DynamicThreshold, otsu_split
from .fixed_threshold import FixedThreshold
from .gmm_threshold import GMMThreshold, fit_two_gaussians
from .matched_threshold import MatchedScoreThreshold, two_means

__all__ = [
    'PseudoLabelSplit', 'BaseThresholdPolicy', 'FixedThreshold', 'DualThreshold',
    'DynamicThreshold', 'otsu_split', 'GMMThreshold', 'fit_two_gaussians',
    'MatchedScoreThreshold', 'two_means'
]
