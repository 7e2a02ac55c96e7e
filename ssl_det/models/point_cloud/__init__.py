"""The point-cloud detector's parts: pillars, BEV backbone/neck, centre-heatmap head."""
from .bev_backbone import BEVBackbone, BEVNeck
from .center_head import CenterHead3D, best_other_class_score, rotated_nms
from .data_preprocessor import PointCloudDataPreprocessor
from .pillar_detector import PillarDetector
from .voxel_encoder import PillarFeatureNet, PillarScatter, PillarVoxelizer, grid_shape

__all__ = ['BEVBackbone', 'BEVNeck', 'CenterHead3D', 'best_other_class_score', 'rotated_nms',
           'PillarDetector',
           'PointCloudDataPreprocessor',
           'PillarFeatureNet', 'PillarScatter', 'PillarVoxelizer', 'grid_shape']
