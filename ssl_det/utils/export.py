"""Export one network of an ssl_det checkpoint as a plain MMDetection model.

A teacher–student checkpoint holds both networks (``teacher.*`` and ``student.*`` keys) and
the pseudo-label policy's state; its config names ssl_det's wrapper, ssl_det's hooks and
``default_scope='ssl_det'``. :func:`export_model` writes what plain MMDetection loads without
ssl_det installed:

* ``<name>.pth``: the chosen network's weights under the detector's own keys (the
  ``teacher.`` / ``student.`` prefix stripped, everything else dropped) and
  ``meta.dataset_meta`` with the classes; it loads with ``torch.load(weights_only=True)``;
* ``<name>.py``: the wrapped detector's config with mmdet's own data preprocessor (the
  ``MultiBranchDataPreprocessor`` unwrapped; ssl_det's ``IgnoreAwareMaxIoUAssigner`` as
  mmdet's ``MaxIoUAssigner``, or no ``train_cfg`` if it names other ssl_det types), the
  config's test pipeline, dataloader and evaluator, mmdet's default runtime and
  ``default_scope='mmdet'``.

Every ``type`` in the written config must resolve in mmdet's registries (or be an
``mmcv.ops`` layer such as ``RoIAlign``, which mmdet looks up there); a config naming an
ssl_det-only class (the 3D ``PillarDetector``, its transforms and metric) is refused with an
error that says the detector needs ssl_det. The weights are checked to load into the mmdet
detector built from the written config with ``strict=True``. ssl_det's fast ``RoIAlign``
(``ssl_det.utils.launch.use_fast_roi_align``) is swapped in at run time only and does not
change the keys.
"""
import copy
import os
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict

from .checkpoint import load_checkpoint_file

NETWORKS = ('teacher', 'student')
# The run-time settings of mmdet's ``_base_/default_runtime.py`` (mmdet 3.3), inlined so
# that the exported config stands alone.
MMDET_RUNTIME = dict(
    default_hooks=dict(
        timer=dict(type='IterTimerHook'),
        logger=dict(type='LoggerHook', interval=50),
        param_scheduler=dict(type='ParamSchedulerHook'),
        checkpoint=dict(type='CheckpointHook', interval=1),
        sampler_seed=dict(type='DistSamplerSeedHook'),
        visualization=dict(type='DetVisualizationHook')),
    env_cfg=dict(cudnn_benchmark=False,
                 mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
                 dist_cfg=dict(backend='nccl')),
    vis_backends=[dict(type='LocalVisBackend')],
    visualizer=dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')],
                    name='visualizer'),
    log_processor=dict(type='LogProcessor', window_size=50, by_epoch=True),
    log_level='INFO',
    load_from=None,
    resume=False)
# Scopes whose registries plain mmdet has (a type named ``mmdet.X`` still builds there).
PLAIN_SCOPES = (None, 'mmdet', 'mmengine', 'mmcv')
# ssl_det classes with an mmdet equivalent that takes the same arguments (what differs is
# training-time behaviour only).
MMDET_EQUIVALENTS = {'IgnoreAwareMaxIoUAssigner': 'MaxIoUAssigner'}


class ExportError(ValueError):
    """The config or the checkpoint cannot be exported as a plain mmdet model."""


def _plain(cfg: Any) -> Any:
    """Config objects (``ConfigDict``, nested) as plain dicts and lists (deep copies)."""
    if isinstance(cfg, dict):
        return {k: _plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_plain(v) for v in cfg)
    return copy.deepcopy(cfg)


def _type_name(type_: Any) -> str:
    return type_ if isinstance(type_, str) else getattr(type_, '__name__', str(type_))


def split_model_config(model_cfg: dict) -> Tuple[dict, bool]:
    """The detector config inside ``model_cfg`` and whether ``model_cfg`` wraps one.

    A teacher–student wrapper (ssl_det's ``TeacherStudent``, ``SoftTeacher``,
    ``TeacherStudent3D``, mmdet's ``SemiBaseDetector`` family) names the detector under
    ``detector``; any other model is the detector itself.

    Args:
        model_cfg (dict): the config's ``model``.

    Returns:
        tuple[dict, bool]: a copy of the detector config (its data preprocessor replaced by
        the one the wrapper ran, unwrapped from ``MultiBranchDataPreprocessor``), and True
        for a wrapper.
    """
    model_cfg = _plain(model_cfg)
    wrapped = 'detector' in model_cfg
    detector = model_cfg['detector'] if wrapped else model_cfg
    if not isinstance(detector, dict) or 'type' not in detector:
        raise ExportError(f"model.detector must be a detector config with a 'type', got "
                          f'{detector!r}')
    preprocessor = model_cfg.get('data_preprocessor') if wrapped else None
    preprocessor = preprocessor or detector.get('data_preprocessor')
    while isinstance(preprocessor, dict) and \
            _type_name(preprocessor.get('type', '')).split('.')[-1] == \
            'MultiBranchDataPreprocessor':
        preprocessor = preprocessor.get('data_preprocessor')
    if preprocessor is not None:
        detector['data_preprocessor'] = preprocessor
    return detector, wrapped


def default_network(model_cfg: dict) -> str:
    """The network a teacher–student model predicts with: ssl_det's ``predict_on``, mmdet's
    ``semi_test_cfg.predict_on``, else 'teacher'."""
    which = model_cfg.get('predict_on') or \
        (model_cfg.get('semi_test_cfg') or {}).get('predict_on') or 'teacher'
    return which


def foreign_types(cfg: Any, path: str = '') -> List[str]:
    """``path.type='Name'`` for every ``type`` in ``cfg`` that plain mmdet cannot build.

    A type is plain when its scope (``mmdet.X``) is none, mmdet, mmengine or mmcv and the
    name resolves in one of ``mmdet.registry``'s registries (which fall back on mmengine's),
    or is an ``mmcv.ops`` attribute (RoI layers and NMS ops, which mmdet looks up there).
    Names scoped to another package (``ssl_det.X``), and a ``_scope_`` key naming one, are
    foreign without a look-up: looking them up would import that package.
    """
    found = []
    if isinstance(cfg, dict):
        type_ = cfg.get('type')
        if type_ is not None and not _is_plain_type(type_):
            found.append(f'{path}.type={_type_name(type_)!r}' if path
                         else f'type={_type_name(type_)!r}')
        scope = cfg.get('_scope_')  # the scope a dict and what it nests are built in
        if scope is not None and scope not in PLAIN_SCOPES:
            found.append(f'{path}._scope_={scope!r}' if path else f'_scope_={scope!r}')
        for key, value in cfg.items():
            if key not in ('type', '_scope_'):
                found += foreign_types(value, f'{path}.{key}' if path else str(key))
    elif isinstance(cfg, (list, tuple)):
        for i, value in enumerate(cfg):
            found += foreign_types(value, f'{path}.{i}')
    return found


def _is_plain_type(type_: Any) -> bool:
    if not isinstance(type_, str):  # a class (lazy-import configs)
        return not getattr(type_, '__module__', '').split('.')[0] == 'ssl_det'
    import mmcv.ops
    from mmdet import registry as mmdet_registry
    from mmengine.registry import Registry
    scope, name = Registry.split_scope_key(type_)
    if scope not in PLAIN_SCOPES:
        return False
    for registry in vars(mmdet_registry).values():
        if isinstance(registry, Registry) and registry.get(name) is not None:
            return True
    return hasattr(mmcv.ops, name)


def check_plain_config(cfg: dict, source: str) -> None:
    """Raise :class:`ExportError` naming every type of the exported config that plain mmdet
    cannot build (each name once, with the first place it is used)."""
    first: Dict[str, str] = {}  # each name once, at its first place
    for found in foreign_types(cfg):
        path, name = found.rsplit('=', 1)
        first.setdefault(name, path)
    if first:
        detector = _type_name(cfg['model']['type'])
        named = ', '.join(f'{name} ({path})' for name, path in first.items())
        raise ExportError(
            f'{source}: the exported config would name types that plain MMDetection cannot '
            f"build (not in mmdet's registries: ssl_det's own classes): {named}. This detector "
            f'({detector}) needs ssl_det: run it with ssl_det (tools/test.py, or an mmdet '
            "config with custom_imports=dict(imports=['ssl_det'])); export_model exports "
            'detectors built from mmdet modules only.')


def _to_mmdet_types(cfg: Any) -> Any:
    """``cfg`` (modified) with the :data:`MMDET_EQUIVALENTS` of ssl_det types."""
    if isinstance(cfg, dict):
        type_ = cfg.get('type')
        if isinstance(type_, str):
            scope, name = type_.split('.', 1) if '.' in type_ else (None, type_)
            if scope in (None, 'ssl_det') and name in MMDET_EQUIVALENTS:
                cfg['type'] = MMDET_EQUIVALENTS[name]
        for value in cfg.values():
            _to_mmdet_types(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            _to_mmdet_types(value)
    return cfg


def plain_config(cfg: Config) -> Tuple[dict, List[str]]:
    """The plain mmdet config (a dict) for the detector of an ssl_det config.

    Args:
        cfg (Config): an ssl_det config, teacher–student or supervised.

    Returns:
        tuple[dict, list[str]]: the config: ``model``, ``test_pipeline``,
        ``test_dataloader``, ``test_evaluator`` (when the config has one), ``test_cfg``,
        mmdet's default runtime and ``default_scope='mmdet'`` (its dataset metainfo not
        filled in yet); and notes on what was changed beyond unwrapping. ssl_det types
        with an mmdet equivalent (``IgnoreAwareMaxIoUAssigner``) become it; a ``train_cfg``
        that still names ssl_det types becomes None (inference does not read it).
    """
    if not isinstance(cfg.get('model'), dict):
        raise ExportError(f'{cfg.filename}: the config has no model')
    detector, _ = split_model_config(cfg.model)
    detector = _to_mmdet_types(detector)
    notes = []
    in_train_cfg = foreign_types(detector.get('train_cfg'), 'model.train_cfg')
    if in_train_cfg:
        detector['train_cfg'] = None
        notes.append(f'model.train_cfg names ssl_det types ({", ".join(in_train_cfg)}): it '
                     'was set to None (inference does not need it; add an mmdet train_cfg '
                     'to fine-tune with mmdet)')
    if cfg.get('test_dataloader') is None:
        raise ExportError(f'{cfg.filename}: the config has no test_dataloader, whose '
                          'pipeline the exported model needs')
    loader = _plain(cfg.test_dataloader)
    dataset = loader.get('dataset') or {}
    if dataset.get('pipeline') is None:
        raise ExportError(f'{cfg.filename}: test_dataloader.dataset has no pipeline '
                          f'(dataset type {dataset.get("type")!r}); export needs a test '
                          'pipeline for images')
    exported = _plain(MMDET_RUNTIME)
    exported.update(
        default_scope='mmdet',
        model=detector,
        test_pipeline=copy.deepcopy(dataset['pipeline']),
        test_dataloader=loader,
        test_cfg=dict(type='TestLoop'))
    if cfg.get('test_evaluator') is not None:
        exported['test_evaluator'] = _plain(cfg.test_evaluator)
    return exported, notes


def select_weights(state_dict: Dict[str, Any], which: Optional[str],
                   source: str = 'checkpoint') -> Tuple['OrderedDict[str, torch.Tensor]',
                                                        Optional[str]]:
    """The weights of one network under the detector's own keys.

    Args:
        state_dict (dict): a checkpoint's ``state_dict`` (``module.`` prefixes of a
            distributed wrapper are stripped first).
        which (str, optional): 'teacher' or 'student' for a teacher–student checkpoint.
        source (str): the checkpoint's name, for error messages.

    Returns:
        tuple: the weights and the network taken ('teacher', 'student', or None for a plain
        detector checkpoint, whose keys are kept whole).
    """
    state = OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                        for k, v in state_dict.items())
    if any(k.startswith(tuple(f'{n}.' for n in NETWORKS)) for k in state):
        if which not in NETWORKS:
            raise ExportError(f'{source} holds a teacher and a student: choose one with '
                              f"--which teacher|student (got {which!r})")
        prefix = f'{which}.'
        weights = OrderedDict((k[len(prefix):], v) for k, v in state.items()
                              if k.startswith(prefix))
        if not weights:
            raise ExportError(f'{source} has no {prefix}* keys (its keys start with '
                              f'{sorted({k.split(".")[0] for k in state})})')
    else:
        weights, which = state, None
    not_tensors = [k for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ExportError(f'{source}: state_dict entries that are not tensors: '
                          f'{not_tensors[:5]}')
    return weights, which


def dataset_meta(cfg: Config, checkpoint: dict, source: str) -> dict:
    """``classes`` (and ``palette`` when known) from the config's test dataset metainfo,
    else from the checkpoint's ``meta.dataset_meta``; the two must agree when both name
    classes."""
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    from_cfg = _plain(dataset.get('metainfo') or cfg.get('metainfo') or {})
    from_ckpt = (checkpoint.get('meta') or {}).get('dataset_meta') or {}
    from_ckpt = {str(k).lower(): v for k, v in from_ckpt.items()}
    cfg_classes = from_cfg.get('classes')
    ckpt_classes = from_ckpt.get('classes')
    if cfg_classes is not None and ckpt_classes is not None and \
            list(cfg_classes) != list(ckpt_classes):
        raise ExportError(f'the classes of {cfg.filename} ({list(cfg_classes)}) differ from '
                          f'those saved in {source} ({list(ckpt_classes)}): is this the '
                          "checkpoint's config?")
    classes = cfg_classes if cfg_classes is not None else ckpt_classes
    if classes is None:
        raise ExportError(f'no classes in {cfg.filename} (test_dataloader.dataset.metainfo) '
                          f'nor in {source} (meta.dataset_meta): set the metainfo in the '
                          'config')
    meta = dict(classes=[str(c) for c in classes])
    palette = from_cfg.get('palette', from_ckpt.get('palette'))
    if isinstance(palette, (list, tuple)) and len(palette) == len(classes):
        meta['palette'] = [tuple(int(c) for c in color) for color in palette]
    return meta


def check_strict_load(model_cfg: dict, weights: Dict[str, torch.Tensor], source: str) -> None:
    """Build the detector in mmdet's scope and load ``weights`` with ``strict=True``."""
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    model_cfg = ConfigDict(copy.deepcopy(model_cfg))  # detectors read cfg.attr
    backbone = model_cfg.get('backbone')
    if isinstance(backbone, dict):
        backbone['init_cfg'] = None  # as mmdet's init_detector: the weights come from here
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(model_cfg)
    try:
        result = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # shapes that differ
        raise ExportError(f'the weights from {source} do not match the mmdet detector '
                          f'{model_cfg["type"]}: {exc}') from exc
    if result.missing_keys or result.unexpected_keys:
        raise ExportError(
            f'the weights from {source} do not match the mmdet detector '
            f'{model_cfg["type"]}: missing keys {result.missing_keys[:10]} '
            f'({len(result.missing_keys)}), unexpected keys {result.unexpected_keys[:10]} '
            f'({len(result.unexpected_keys)})')


def inference_command(config_file: str, checkpoint_file: str,
                      images: str = 'my_images/', out_dir: str = 'outputs/') -> str:
    """The command that runs an exported model with mmdet alone on a folder of images
    (predictions as JSON under ``out_dir/preds``, painted images under ``out_dir/vis``)."""
    return ('python -c "from mmdet.apis import DetInferencer; '
            f"DetInferencer(model='{config_file}', weights='{checkpoint_file}', "
            f"device='cpu')('{images}', out_dir='{out_dir}', no_save_pred=False)\"")


def export_model(checkpoint: str, config: str, out_dir: str, which: Optional[str] = None,
                 cfg_options: Optional[dict] = None, name: Optional[str] = None) -> dict:
    """Write the plain mmdet checkpoint and config of one network of an ssl_det model.

    Args:
        checkpoint (str): the ssl_det checkpoint (loaded with ``weights_only=True`` unless
            checkpoints are trusted, see :mod:`ssl_det.utils.checkpoint`).
        config (str): the ssl_det config the checkpoint was trained with.
        out_dir (str): the folder to write into (created).
        which (str, optional): 'teacher' or 'student' for a teacher–student checkpoint.
            None takes the config's ``predict_on`` (the network ssl_det evaluates). Ignored
            for a plain detector checkpoint (one network, its keys kept as they are).
        cfg_options (dict, optional): overrides merged into the config first.
        name (str, optional): the files' name without extension. Default: the config's
            name, with ``_teacher`` / ``_student`` for a teacher–student checkpoint.

    Returns:
        dict: ``checkpoint`` and ``config`` (the written paths), ``which`` (the network
        taken, None for a plain checkpoint), ``num_weights``, ``classes``, ``notes`` (what
        :func:`plain_config` changed) and ``command`` (the mmdet command for a folder of
        images).
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config not found: {config}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    exported, notes = plain_config(cfg)
    _, wrapped = split_model_config(cfg.model)
    if which is not None and which not in NETWORKS:
        raise ExportError(f"which must be 'teacher' or 'student', got {which!r}")
    check_plain_config(exported, config)  # before reading a possibly large checkpoint

    ckpt = load_checkpoint_file(checkpoint, map_location='cpu')
    state_dict = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state_dict, dict):
        raise ExportError(f'{checkpoint} holds no state_dict')
    if which is None and wrapped:
        which = default_network(_plain(cfg.model))
    weights, taken = select_weights(state_dict, which or 'teacher', checkpoint)
    meta = dataset_meta(cfg, ckpt, checkpoint)
    exported['test_dataloader']['dataset']['metainfo'] = copy.deepcopy(meta)
    check_strict_load(exported['model'], weights, checkpoint)

    name = name or osp.splitext(osp.basename(config))[0] + (f'_{taken}' if taken else '')
    os.makedirs(out_dir, exist_ok=True)
    ckpt_file = osp.join(out_dir, f'{name}.pth')
    cfg_file = osp.join(out_dir, f'{name}.py')
    old_meta = ckpt.get('meta') or {}
    torch.save(dict(state_dict=weights, meta=dict(
        dataset_meta=meta,
        exported_from=dict(checkpoint=osp.abspath(checkpoint), config=osp.abspath(config),
                           network=taken or 'detector'),
        **{k: int(old_meta[k]) for k in ('epoch', 'iter')
           if isinstance(old_meta.get(k), int)})), ckpt_file)
    torch.load(ckpt_file, map_location='cpu', weights_only=True)  # what mmdet will do
    Config(exported).dump(cfg_file)
    return dict(checkpoint=ckpt_file, config=cfg_file, which=taken, num_weights=len(weights),
                classes=meta['classes'], notes=notes,
                command=inference_command(cfg_file, ckpt_file))
