"""Training engine: hooks and loops for teacher-student training."""
from .hooks import *  # noqa: F401,F403
from .runner import *  # noqa: F401,F403
