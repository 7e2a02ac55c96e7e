from .teacher_student import TeacherStudent

__all__ = ['TeacherStudent']
