"""Datasets, samplers and data checks for semi-supervised training (2D COCO and point
clouds)."""
from . import transforms  # noqa: F401  (registers ssl_det's transforms)
from .coco import CocoDataset
from .collate_3d import point_cloud_collate
from .demo_data_3d import make_demo_data_3d
from .kitti import convert_kitti
from .mmdet3d_infos import convert_mmdet3d_info
from .multi_source_sampler import MultiSourceSampler
from .point_cloud_dataset import PointCloudDataset
from .point_cloud_split import split_point_cloud
from .resumable import DrawIndex, ResumableBatchSampler, SeededDataset
from .semi_checks import SemiSplitSummary, check_semi_split

__all__ = ['CocoDataset', 'MultiSourceSampler', 'check_semi_split', 'SemiSplitSummary',
           'PointCloudDataset', 'convert_kitti', 'convert_mmdet3d_info',
           'make_demo_data_3d', 'split_point_cloud', 'point_cloud_collate', 'DrawIndex',
           'ResumableBatchSampler', 'SeededDataset']
