"""ssl_det's data transforms: 2D strong/weak helpers and point-cloud loading, augmentation
(each geometric step composes ``lidar_aug_matrix``), object sampling and packing."""
from .formatting_3d import PackPointCloudInputs
from .loading import LoadImageFromFile
from .loading_3d import LoadPointsFromFile
from .object_sample import ObjectSample, check_database_leak, create_gt_database
from .photometric import AlbuPhotometric
from .point_cloud import (BOX_KEYS, GlobalRotScaleTrans, ObjectMinPointsFilter,
                          ObjectNameFilter, ObjectRangeFilter, PointDropout, PointJitter,
                          PointShuffle, PointsRangeFilter, RandomFlip3D, apply_aug_matrix)
from .shuffle_3d import BEVPatchShuffle

__all__ = [
    'AlbuPhotometric', 'LoadImageFromFile', 'LoadPointsFromFile', 'PackPointCloudInputs',
    'ObjectSample',
    'check_database_leak', 'create_gt_database', 'BOX_KEYS', 'RandomFlip3D',
    'GlobalRotScaleTrans', 'PointsRangeFilter', 'ObjectRangeFilter', 'ObjectNameFilter',
    'ObjectMinPointsFilter', 'PointDropout', 'PointJitter', 'PointShuffle', 'apply_aug_matrix',
    'BEVPatchShuffle'
]
