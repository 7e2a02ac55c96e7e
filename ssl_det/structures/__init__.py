"""Geometry shared by the teacher and the student: moving boxes and masks between views."""
from .projection import (filter_degenerate, project_boxes, project_masks,
                         weak_to_strong_homography)

__all__ = ['project_boxes', 'weak_to_strong_homography', 'project_masks', 'filter_degenerate']
