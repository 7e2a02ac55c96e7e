"""Loops: the resumable iteration-based training loop, and validation of both members of a
teacher-student model."""
from .resumable_loop import IterBasedTrainLoop
from .teacher_student_val_loop import TeacherStudentValLoop

__all__ = ['IterBasedTrainLoop', 'TeacherStudentValLoop']
