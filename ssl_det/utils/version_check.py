"""Fail early, with the fix, when the OpenMMLab stack has versions ssl_det does not support."""
from packaging.version import parse

# (package, lowest supported, first unsupported)
SUPPORTED = (
    ('mmengine', '0.10.0', '0.11.0'),
    ('mmcv', '2.0.0', '2.2.0'),
    ('mmdet', '3.3.0', '3.4.0'),
)


def check_stack() -> None:
    import importlib
    for name, low, high in SUPPORTED:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(
                f'ssl_det needs {name}>={low},<{high}, which failed to import ({exc}). '
                'Run tools/setup_env.sh to set up the environment.') from exc
        version = parse(module.__version__)
        if not parse(low) <= version < parse(high):
            raise ImportError(
                f'ssl_det supports {name}>={low},<{high}, but {name} {module.__version__} is '
                f'installed. Install a supported version (tools/setup_env.sh does).')
