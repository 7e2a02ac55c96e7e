"""Loops: validation of both members of a teacher-student model."""
from .teacher_student_val_loop import TeacherStudentValLoop

__all__ = ['TeacherStudentValLoop']
