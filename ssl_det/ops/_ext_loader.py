"""Loads ssl_det's compiled extension, failing loudly (with the rebuild command) if it is absent."""
import importlib
from types import ModuleType

REBUILD_HINT = ('Rebuild it with `bash tools/setup_env.sh` or '
                '`pip install --no-build-isolation -e .` from the repository root '
                '(add SSL_DET_FORCE_CUDA=1 to compile the CUDA kernels).')


def load_ext(name: str = 'ssl_det._ext') -> ModuleType:
    """Imports the compiled extension module ``name``.

    There is deliberately no pure-Python fallback: a training run that silently used slow
    reference code would be hard to notice.

    Raises:
        ImportError: the extension is missing or does not load; the message says how to
            rebuild it.
    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ImportError(f"ssl_det's compiled ops ({name}) could not be imported: {err}. "
                          f'{REBUILD_HINT}') from err
