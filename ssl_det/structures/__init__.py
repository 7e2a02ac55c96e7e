"""Geometry shared by the teacher and the student: moving boxes and masks between views
(2D homographies; 3D boxes in one convention and their 4×4 augmentation maps)."""
from .box3d import (BOX3D_DIM, box3d_corners, camera_to_lidar, check_boxes3d,
                    from_mmdet3d_lidar, kitti_label_to_camera_boxes, lidar_to_camera,
                    limit_period, match_boxes_bev, points_in_boxes, to_mmdet3d_lidar,
                    top_gaps, top_support, transform_boxes3d, transform_points,
                    weak_to_strong_matrix)
from .point_cloud_data_sample import PointCloudDataSample
from .projection import (filter_degenerate, project_boxes, project_masks,
                         weak_to_strong_homography)

__all__ = [
    'PointCloudDataSample', 'project_boxes', 'weak_to_strong_homography', 'project_masks', 'filter_degenerate',
    'BOX3D_DIM', 'box3d_corners', 'camera_to_lidar', 'check_boxes3d', 'from_mmdet3d_lidar',
    'kitti_label_to_camera_boxes', 'lidar_to_camera', 'limit_period', 'match_boxes_bev',
    'points_in_boxes', 'top_gaps', 'top_support',
    'to_mmdet3d_lidar', 'transform_boxes3d', 'transform_points', 'weak_to_strong_matrix'
]
