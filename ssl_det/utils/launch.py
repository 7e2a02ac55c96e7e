"""What tools/train.py and tools/test.py do to a config before building the Runner."""
import logging
import os
import subprocess
from typing import Dict, Mapping, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config

from .checkpoint import trust_checkpoints

# Hooks every ssl_det run needs, whatever the config: checkpoints loadable with
# weights_only=True, and the start-up checks of the data (missing files, empty splits,
# category mismatches between labeled and unlabeled files).
# And the guard that logs, counts and bounds the steps skipped for a non-finite loss, and
# the random states a resumed run continues from.
REQUIRED_HOOKS = ('SafeCheckpointHook', 'DataCheckHook', 'NonFiniteGuardHook',
                  'RandomStateHook')


def add_required_hooks(cfg: Config) -> None:
    hooks = list(cfg.get('custom_hooks', None) or [])
    present = {str(h.get('type', '')).split('.')[-1] for h in hooks}
    for name in REQUIRED_HOOKS:
        if name not in present:
            hooks.append(dict(type=f'ssl_det.{name}'))
    cfg.custom_hooks = hooks


def _scontrol_hosts(nodelist: str) -> Optional[list]:
    """``scontrol show hostnames NODELIST`` (None where scontrol is missing or fails)."""
    try:
        proc = subprocess.run(['scontrol', 'show', 'hostnames', nodelist],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    hosts = proc.stdout.split()
    return hosts if proc.returncode == 0 and hosts else None


def first_slurm_host(nodelist: str) -> str:
    """The first host of a Slurm node list (``node[01-04],gpu7`` -> ``node01``): scontrol's
    answer, or without scontrol the list read directly (the first entry of each bracket)."""
    hosts = _scontrol_hosts(nodelist)
    if hosts:
        return hosts[0]
    host, i = '', 0
    while i < len(nodelist) and nodelist[i] != ',':
        if nodelist[i] == '[':
            end = nodelist.index(']', i)
            host += nodelist[i + 1:end].split(',')[0].split('-')[0]
            i = end + 1
        else:
            host += nodelist[i]
            i += 1
    return host


def slurm_to_torch_env(environ: Mapping[str, str] = os.environ) -> Dict[str, str]:
    """torch.distributed's ``env://`` variables for a task started by ``srun``, as mmengine's
    slurm set-up derives them: ``RANK`` = ``SLURM_PROCID``, ``WORLD_SIZE`` =
    ``SLURM_NTASKS``, ``LOCAL_RANK`` = ``SLURM_LOCALID``; ``MASTER_ADDR`` (the first host of
    the step's node list) and ``MASTER_PORT`` (29500) unless already set."""
    for key in ('SLURM_PROCID', 'SLURM_NTASKS'):
        if key not in environ:
            raise KeyError(f'--launcher slurm needs {key} (set by srun); start the job with '
                           'tools/slurm_train.sh or srun, or use --launcher pytorch (torchrun)')
    env = {'RANK': environ['SLURM_PROCID'], 'WORLD_SIZE': environ['SLURM_NTASKS'],
           'LOCAL_RANK': environ.get('SLURM_LOCALID', '0'),
           'MASTER_PORT': environ.get('MASTER_PORT', '29500')}
    if environ.get('MASTER_ADDR'):
        env['MASTER_ADDR'] = environ['MASTER_ADDR']
    else:
        nodelist = environ.get('SLURM_STEP_NODELIST') or environ.get('SLURM_NODELIST')
        if not nodelist:
            raise KeyError('--launcher slurm needs SLURM_NODELIST (set by srun) or MASTER_ADDR')
        env['MASTER_ADDR'] = first_slurm_host(nodelist)
    return env


def init_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Distributed training without CUDA: a gloo process group and CPU-friendly DDP.

    mmengine 0.10's ``init_dist('pytorch')`` and ``init_dist('slurm')`` call
    ``torch.cuda.set_device`` and fail on CPU torch; the Runner skips its own initialisation
    when a process group exists, and its default DDP wrapper passes
    ``device_ids=[LOCAL_RANK]``, which DDP rejects for CPU modules. ``--launcher slurm``
    first sets torch's ``env://`` variables from the ``SLURM_*`` ones
    (:func:`slurm_to_torch_env`).
    """
    if launcher == 'none' or torch.cuda.is_available() or dist.is_initialized():
        return
    if launcher not in ('pytorch', 'slurm'):
        raise ValueError(f'CPU distributed training supports --launcher pytorch (torchrun) '
                         f'and slurm (srun), got {launcher!r}')
    if launcher == 'slurm':
        os.environ.update(slurm_to_torch_env(os.environ))
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
    """Drops mmengine's "Reach the end of the dataloader" warning: mmengine's iteration-based
    loop (ssl_det's with ``resumable=False``) over a sampler with epochs (ssl_det's
    ``MultiSourceSampler``, mmengine's ``DefaultSampler``) restarts it by design, and
    ``set_epoch`` reshuffles. ssl_det's resumable loop does not restart it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith('Reach the end of the dataloader')


def silence_expected_warnings(runner) -> None:
    """Install :class:`_DropExpected` on the run's logger (once)."""
    if not any(isinstance(f, _DropExpected) for f in runner.logger.filters):
        runner.logger.addFilter(_DropExpected())


def use_resumable_training(cfg: Config) -> None:
    """The bare ``CheckpointHook`` and ``IterBasedTrainLoop`` of a config are ssl_det's
    (with ``default_scope='ssl_det'`` they are anyway; this holds under another scope too):
    checkpoints written so that a kill leaves a complete one, and a resume that skips the
    trained batches by index and continues them exactly."""
    hook = (cfg.get('default_hooks', None) or {}).get('checkpoint', None)
    if hook is not None and hook.get('type') == 'CheckpointHook':
        hook['type'] = 'ssl_det.CheckpointHook'
    loop = cfg.get('train_cfg', None)
    if loop is not None and loop.get('type') == 'IterBasedTrainLoop':
        loop['type'] = 'ssl_det.IterBasedTrainLoop'


def resume_config(cfg: Config, checkpoint: Optional[str] = None) -> Optional[str]:
    """Set ``cfg`` to resume from ``checkpoint``, or (None) from the newest complete
    checkpoint of ``cfg.work_dir`` (``last_checkpoint``, else the highest-numbered one
    that is complete). The run takes the checkpoint's seed (``meta.seed``) before the
    Runner builds anything, so the sampler continues the shuffle it was trained with.
    Returns the checkpoint, or None when there is none yet (the run starts afresh)."""
    from mmengine.logging import print_log

    from .checkpoint import checkpoint_seed, find_resume_checkpoint
    if checkpoint is None:
        checkpoint = find_resume_checkpoint(cfg.work_dir)
        if checkpoint is None:
            print_log(f'--resume: no complete checkpoint in {cfg.work_dir}; starting from '
                      'scratch', logger='current')
            cfg.resume, cfg.load_from = False, None
            return None
    cfg.resume, cfg.load_from = True, checkpoint
    seed = checkpoint_seed(checkpoint)
    if seed is not None:
        randomness = dict(cfg.get('randomness', None) or {})
        if randomness.get('seed') not in (None, seed):
            print_log(f'--resume: the config says randomness.seed={randomness["seed"]}, '
                      f'{checkpoint} was trained with {seed}; continuing with {seed}',
                      logger='current', level=logging.WARNING)
        randomness['seed'] = seed
        cfg.randomness = randomness
    return checkpoint


def memoize_config_formatting() -> None:
    """Format each config text with yapf once per process, not at every call.

    mmengine formats the whole config with yapf each time it reads ``Config.pretty_text``:
    in the log, in the dumped config, in ``RuntimeInfoHook`` and in every checkpoint's
    metadata. On 2 CPU cores a DeepPCB config took 6.4 s a time, 32 s of a 10-minute run.
    The cache is keyed on the unformatted text and yapf's style, so the output is the same.
    """
    import mmengine.config.config as config_module
    if getattr(config_module.FormatCode, 'ssl_det_memoized', False):
        return
    format_code, cache = config_module.FormatCode, {}

    def memoized(text, style_config=None, **kwargs):
        key = (text, repr(style_config), repr(sorted(kwargs.items())))
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = format_code(text, style_config=style_config, **kwargs)
        return cache[key]

    memoized.ssl_det_memoized = True
    config_module.FormatCode = memoized


def prepare_config(cfg: Config, launcher: str = 'none',
                   trust_checkpoint: Optional[bool] = None) -> Config:
    """Apply ssl_det's run-time requirements to ``cfg`` (in place) and return it."""
    cfg.launcher = launcher
    memoize_config_formatting()
    if trust_checkpoint or cfg.get('trust_checkpoint', False):
        trust_checkpoints(True)
    add_required_hooks(cfg)
    use_skip_non_finite(cfg)
    use_semi_log_processor(cfg)
    use_resumable_training(cfg)
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


def use_channels_last(runner, cfg: Config) -> bool:
    """Store the model's 4-D weights channels-last (NHWC) when it trains or tests on the CPU.

    oneDNN's CPU convolutions run on NHWC without reordering; a convolution whose weight is
    channels-last makes its output channels-last too, so the whole backbone and FPN follow
    from the first layer. On 2 cores the DeepPCB Soft Teacher step took 7% less time
    (1.13 -> 1.05 s), a backbone's forward without gradients (the teacher, testing) about
    40% less. The maths is the same; the convolutions' float32 sums run in another order.
    ``channels_last`` in the config: ``'auto'`` (default), ``True`` or ``False``. ``'auto'``
    turns it on when every parameter is on the CPU, the run is not distributed (DDP's
    gradient buckets expect contiguous gradients) and the model holds no layer of
    ``mmcv.ops``: mmcv's CPU kernels read their input as contiguous NCHW without checking
    (its ``RoIAlign`` returns wrong values for a channels-last map), so it is on for mmdet's
    detectors once :func:`use_fast_roi_align` swapped their RoIAlign for ssl_det's, which
    takes either layout. Returns whether the weights were converted."""
    from mmengine.logging import print_log
    setting = cfg.get('channels_last', 'auto')
    if setting not in ('auto', True, False):
        raise ValueError(f"channels_last must be 'auto', True or False, got {setting!r}")
    model = runner.model
    params = list(model.parameters())
    if not setting or not any(p.dim() == 4 for p in params):
        return False
    mmcv_ops = sorted({type(m).__name__ for m in model.modules()
                       if type(m).__module__.startswith('mmcv.ops')})
    if setting == 'auto':
        from mmengine.dist import get_world_size
        if not (all(p.device.type == 'cpu' for p in params) and get_world_size() == 1):
            return False
        if mmcv_ops:
            print_log(f"channels_last: kept NCHW, the model has mmcv.ops layers "
                      f"({', '.join(mmcv_ops)}) "
                      'whose CPU kernels need NCHW', logger='current')
            return False
    elif mmcv_ops:
        print_log(f'channels_last = True with mmcv.ops layers ({", ".join(mmcv_ops)}): their '
                  'CPU kernels read channels-last maps as NCHW', logger='current',
                  level=logging.WARNING)
    model.to(memory_format=torch.channels_last)
    print_log("channels_last: the model's convolution weights are stored channels-last "
              "(faster CPU convolutions; set channels_last = False to keep NCHW)",
              logger='current')
    return True


def use_fast_nms(cfg: Config) -> bool:
    """Make mmcv's ``nms`` (and so ``batched_nms``, which mmdet's heads call) run
    ``ssl_det.ops.nms`` on float32 CPU tensors: the same kept boxes, about 15x faster;
    CUDA tensors still use mmcv's kernel. Skipped when the config says ``fast_nms = False``
    (then mmcv's own kernel is put back). Returns whether the fast kernel is installed."""
    from ssl_det.ops import use_fast_cpu_nms
    enable = bool(cfg.get('fast_nms', True))
    use_fast_cpu_nms(enable)
    if enable:
        from mmengine.logging import print_log
        print_log("fast_nms: mmcv's CPU NMS kernel replaced by ssl_det.ops.nms (same results; "
                  "set fast_nms = False to keep mmcv's)", logger='current')
    return enable
