"""ssl_det: semi-supervised teacher-student detection on the OpenMMLab stack.

Importing ``ssl_det`` checks the versions of the stack and registers every ssl_det module
in ssl_det's registries (children of mmdet's, scope ``ssl_det``). Set
``SSL_DET_OPS_ONLY=1`` to import only the compiled ops (``ssl_det.ops``) on a host without
mmdet, e.g. a GPU box used to check the CUDA kernels.
"""
import os

from .version import __version__

if os.environ.get('SSL_DET_OPS_ONLY', '0') != '1':
    from .utils.version_check import check_stack
    check_stack()
    from . import registry  # noqa: F401,E402
    from . import datasets, engine, evaluation, models, structures  # noqa: F401,E402
    from .engine.hooks import data_check_hook, safe_checkpoint_hook  # noqa: F401,E402
    from .utils.checkpoint import register_atomic_writes, register_safe_loader
    register_safe_loader()
    register_atomic_writes()

__all__ = ['__version__']
