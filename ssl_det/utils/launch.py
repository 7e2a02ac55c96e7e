"""What tools/train.py and tools/test.py do to a config before building the Runner."""
import logging
import os
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config

from .checkpoint import trust_checkpoints

# Hooks every ssl_det run needs, whatever the config: checkpoints loadable with
# weights_only=True, and the start-up checks of the data (missing files, empty splits,
# category mismatches between labeled and unlabeled files).
# And the guard that logs, counts and bounds the steps skipped for a non-finite loss.
REQUIRED_HOOKS = ('SafeCheckpointHook', 'DataCheckHook', 'NonFiniteGuardHook')


def add_required_hooks(cfg: Config) -> None:
    hooks = list(cfg.get('custom_hooks', None) or [])
    present = {str(h.get('type', '')).split('.')[-1] for h in hooks}
    for name in REQUIRED_HOOKS:
        if name not in present:
            hooks.append(dict(type=f'ssl_det.{name}'))
    cfg.custom_hooks = hooks


def init_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Distributed training without CUDA: a gloo process group and CPU-friendly DDP.

    mmengine 0.10's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` and fails on CPU
    torch; the Runner skips its own initialisation when a process group exists, and its
    default DDP wrapper passes ``device_ids=[LOCAL_RANK]``, which DDP rejects for CPU modules.
    """
    if launcher == 'none' or torch.cuda.is_available() or dist.is_initialized():
        return
    if launcher != 'pytorch':
        raise ValueError(f'CPU distributed training supports --launcher pytorch (torchrun), '
                         f'got {launcher!r}')
    dist.init_process_group(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg', None) or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.update(device_ids=None)
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', True)
    cfg.model_wrapper_cfg = wrapper
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'


def finish_distributed() -> None:
    """Leave the process group cleanly once a run has finished on every rank: a barrier,
    then ``destroy_process_group``. Without it a rank may exit (and tear gloo down) while
    another still talks to it, which can abort the process at exit."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def use_skip_non_finite(cfg: Config) -> None:
    """mmengine's plain ``OptimWrapper`` becomes ``SkipNonFiniteOptimWrapper`` (same
    arguments): a NaN/Inf loss or gradient skips its step instead of poisoning the weights.
    ``AmpOptimWrapper`` (its loss scaler already skips overflowing steps) and other types
    are kept."""
    wrapper = cfg.get('optim_wrapper', None)
    if wrapper is not None and str(wrapper.get('type', 'OptimWrapper')).split('.')[-1] == \
            'OptimWrapper':
        wrapper['type'] = 'ssl_det.SkipNonFiniteOptimWrapper'


def use_semi_log_processor(cfg: Config) -> None:
    """mmengine's ``LogProcessor`` (what mmdet's runtime names) becomes ssl_det's
    ``SemiLogProcessor``, same arguments: per-class pseudo-label keys go to the scalar
    backends and a periodic table rather than onto every text line. Another type named by
    the config is kept."""
    processor = dict(cfg.get('log_processor', None) or {})
    if str(processor.get('type', 'LogProcessor')).split('.')[-1] == 'LogProcessor':
        processor['type'] = 'ssl_det.SemiLogProcessor'
        cfg.log_processor = processor


class _DropExpected(logging.Filter):
    """Drops mmengine's "Reach the end of the dataloader" warning: an iteration-based loop
    over a sampler with epochs (ssl_det's ``MultiSourceSampler``, mmengine's
    ``DefaultSampler``) restarts it by design, and ``set_epoch`` reshuffles."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith('Reach the end of the dataloader')


def silence_expected_warnings(runner) -> None:
    """Install :class:`_DropExpected` on the run's logger (once)."""
    if not any(isinstance(f, _DropExpected) for f in runner.logger.filters):
        runner.logger.addFilter(_DropExpected())


def prepare_config(cfg: Config, launcher: str = 'none',
                   trust_checkpoint: Optional[bool] = None) -> Config:
    """Apply ssl_det's run-time requirements to ``cfg`` (in place) and return it."""
    cfg.launcher = launcher
    if trust_checkpoint or cfg.get('trust_checkpoint', False):
        trust_checkpoints(True)
    add_required_hooks(cfg)
    use_skip_non_finite(cfg)
    use_semi_log_processor(cfg)
    init_cpu_distributed(cfg, launcher)
    os.environ.setdefault('LOCAL_RANK', '0')
    return cfg


def use_fast_roi_align(runner, cfg: Config) -> int:
    """Swap the model's mmcv ``RoIAlign`` layers for ``ssl_det.ops.RoIAlign`` (bitwise the
    same results, multi-threaded on the CPU; CUDA tensors still use mmcv's kernel) unless the
    config says ``fast_roi_align = False``. Returns the number of layers swapped."""
    if not cfg.get('fast_roi_align', True):
        return 0
    from mmengine.logging import print_log

    from ssl_det.ops import replace_roi_align
    swapped = replace_roi_align(runner.model)
    if swapped:
        print_log(f'fast_roi_align: {swapped} mmcv RoIAlign layer(s) replaced by '
                  'ssl_det.ops.RoIAlign (same results; set fast_roi_align = False to keep '
                  "mmcv's)", logger='current')
    return swapped
