"""Training engine: hooks, loops, the log processor and the optimizer wrapper."""
from .hooks import *  # noqa: F401,F403
from .log_processor import SemiLogProcessor  # noqa: F401
from .optim_wrapper import SkipNonFiniteOptimWrapper  # noqa: F401
from .runner import *  # noqa: F401,F403
