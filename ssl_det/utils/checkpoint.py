"""Checkpoints that load with ``torch.load(weights_only=True)``, and trust made explicit.

torch >= 2.6 unpickles with ``weights_only=True`` by default, and mmengine 0.10.7 calls a
bare ``torch.load``: any mmengine checkpoint then fails on the ``HistoryBuffer`` objects
(holding numpy arrays) in its ``message_hub``. Switching the safe default off globally would
let any checkpoint run code. Instead:

* :func:`to_weights_only` rewrites what mmengine puts in a checkpoint (history buffers,
  numpy arrays and scalars) into tensors and plain containers; ``SafeCheckpointHook`` applies
  it before every save, so ssl_det's checkpoints load with ``weights_only=True``;
* :func:`load_checkpoint_file` replaces mmengine's loader for local files: it loads with
  ``weights_only=True``, rebuilds the history buffers, and refuses a checkpoint that needs
  full unpickling unless the user said they trust it (``--trust-checkpoint`` in the tools,
  ``trust_checkpoint = True`` in a config, or ``SSL_DET_TRUST_CHECKPOINT=1``).
"""
import os
import pickle
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import CheckpointLoader

_BUFFER_TAG = '__ssl_det_history_buffer__'
_TRUST_ENV = 'SSL_DET_TRUST_CHECKPOINT'


class UntrustedCheckpointError(RuntimeError):
    """A checkpoint needs full unpickling (it may run code) and was not trusted."""


def trust_checkpoints(enabled: bool = True) -> None:
    """Allow (or forbid again) full unpickling of checkpoints in this process and children."""
    if enabled:
        os.environ[_TRUST_ENV] = '1'
    else:
        os.environ.pop(_TRUST_ENV, None)


def checkpoints_trusted() -> bool:
    return os.environ.get(_TRUST_ENV, '0') == '1'


def to_weights_only(obj: Any) -> Any:
    """Rewrite ``obj`` into types that ``torch.load(weights_only=True)`` accepts."""
    if isinstance(obj, HistoryBuffer):
        return {_BUFFER_TAG: True,
                'log_history': torch.from_numpy(np.asarray(obj._log_history, np.float64)),
                'count_history': torch.from_numpy(np.asarray(obj._count_history, np.float64)),
                'max_length': int(obj.max_length)}
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, to_weights_only(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: to_weights_only(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_weights_only(v) for v in obj)
    return obj


def _restore_buffers(obj: Any) -> Any:
    """Inverse of :func:`to_weights_only` for history buffers (numpy arrays stay tensors)."""
    if isinstance(obj, dict):
        if obj.get(_BUFFER_TAG) is True:
            return HistoryBuffer(obj['log_history'].numpy(), obj['count_history'].numpy(),
                                 obj['max_length'])
        restored = ((k, _restore_buffers(v)) for k, v in obj.items())
        return OrderedDict(restored) if isinstance(obj, OrderedDict) else dict(restored)
    if isinstance(obj, list):
        return [_restore_buffers(v) for v in obj]
    return obj


def load_checkpoint_file(filename: str, map_location=None) -> Any:
    """Load a local checkpoint safely; full unpickling only when trusted."""
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    try:
        checkpoint = torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not checkpoints_trusted():
            raise UntrustedCheckpointError(
                f'{filename} holds Python objects beyond tensors and plain containers, and '
                'unpickling them could run arbitrary code, so it was refused. If you trust '
                'this file, pass --trust-checkpoint to tools/train.py / tools/test.py, set '
                f'`trust_checkpoint = True` in the config, or export {_TRUST_ENV}=1. '
                f'(torch said: {str(exc).splitlines()[0]})') from exc
        print_log(f'loading trusted checkpoint {filename} with full unpickling',
                  logger='current')
        checkpoint = torch.load(filename, map_location=map_location, weights_only=False)
    return _restore_buffers(checkpoint)


def register_safe_loader() -> None:
    """Make mmengine load local checkpoints through :func:`load_checkpoint_file`."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_checkpoint_file, force=True)
