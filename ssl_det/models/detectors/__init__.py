from .teacher_student import TeacherStudent
from .teacher_student_3d import TeacherStudent3D

__all__ = ['TeacherStudent', 'TeacherStudent3D']
