"""Soft Teacher in small parts: selection, uncertainty, background weights, losses."""
from .background import (soft_background_weights, student_to_teacher_boxes,
                         teacher_background_scores, teacher_class_scores)
from .losses import (positive_regression_loss, sample_proposals, soft_classification_loss,
                     soft_negative_classification_loss)
from .selection import SoftTeacherSelection, select_pseudo_labels
from .soft_teacher import SoftTeacher
from .uncertainty import jitter_box_uncertainty, refine_boxes

__all__ = [
    'SoftTeacher', 'SoftTeacherSelection', 'select_pseudo_labels', 'jitter_box_uncertainty',
    'refine_boxes', 'teacher_background_scores', 'teacher_class_scores',
    'soft_background_weights', 'student_to_teacher_boxes', 'sample_proposals',
    'soft_classification_loss', 'soft_negative_classification_loss',
    'positive_regression_loss'
]
