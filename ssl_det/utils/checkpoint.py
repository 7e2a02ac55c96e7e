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
import logging
import os
import pickle
import re
import time
import zipfile
from collections import OrderedDict
from typing import Any, Optional

import numpy as np
import torch
from mmengine.fileio.backends import LocalBackend, register_backend
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


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic writes: each file is written to a
    temporary name in its folder, flushed to disk, then renamed over the target. A process
    killed at any moment (``kill -9`` during a checkpoint save included) leaves either the
    old file or the complete new one, never a truncated one; ``last_checkpoint`` (written
    after the checkpoint, through the same backend) never names a partial file.

    ``SSL_DET_SLOW_SAVE_S`` (seconds, tests only) sleeps between writing and renaming,
    which lets a test kill a run inside a save.
    """

    def put(self, obj: bytes, filepath) -> None:
        self._atomic_write(obj, str(filepath), 'wb')

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self._atomic_write(obj.encode(encoding), str(filepath), 'wb')

    @staticmethod
    def _atomic_write(data: bytes, filepath: str, mode: str) -> None:
        folder = os.path.dirname(filepath) or '.'
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f'.{os.path.basename(filepath)}.{os.getpid()}.tmp')
        try:
            with open(tmp, mode) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            delay = float(os.environ.get('SSL_DET_SLOW_SAVE_S', '0') or 0)
            if delay > 0:
                time.sleep(delay)
            os.replace(tmp, filepath)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        try:  # make the rename itself durable
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass


def register_atomic_writes() -> None:
    """Make mmengine write local files (checkpoints, ``last_checkpoint``) atomically."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    from mmengine.fileio import io as fileio_io
    fileio_io.backend_instances.clear()  # drop cached plain local backends


def checkpoint_loads(path: str) -> bool:
    """Whether ``path`` is a complete checkpoint (torch's zip archive with its central
    directory): cheap, no tensor is read."""
    if not os.path.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith('data.pkl') for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (no path) continues from: the one ``last_checkpoint``
    names if it is complete, else the newest complete ``iter_*.pth`` / ``epoch_*.pth`` of
    ``work_dir`` (by number), else None."""
    record = os.path.join(work_dir, 'last_checkpoint')
    if os.path.isfile(record):
        named = open(record).read().strip()
        if checkpoint_loads(named):
            return named
        if named:
            print_log(f'{record} names {named}, which is missing or incomplete; looking for '
                      'the newest complete checkpoint instead', logger='current',
                      level=logging.WARNING)
    found = []
    for name in os.listdir(work_dir) if os.path.isdir(work_dir) else []:
        match = re.fullmatch(r'(iter|epoch)_(\d+)\.pth', name)
        if match:
            found.append((int(match[2]), os.path.join(work_dir, name)))
    for _, path in sorted(found, reverse=True):
        if checkpoint_loads(path):
            return path
    return None


def checkpoint_seed(path: str) -> Optional[int]:
    """``meta.seed`` of a checkpoint, read without loading its tensors (memory-mapped)."""
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception:  # an untrusted/old-format checkpoint: the resume itself will say
        return None
    seed = (checkpoint.get('meta') or {}).get('seed') if isinstance(checkpoint, dict) else None
    return None if seed is None else int(seed)
