"""Build-time checks that a detector can use what a pseudo-label policy produces.

A policy with an ambiguous band writes ``ignored_instances``; only assigners with a positive
``ignore_iof_thr`` (mmdet's ``MaxIoUAssigner``, ``ATSSAssigner``, ...) act on them. mmdet's
base configs set ``ignore_iof_thr=-1`` and some heads (FCOS, CenterNet; DETR-style heads,
whose one-to-one matching has nothing to ignore) have no assigner that reads them: the band is then trained as background, silently. These
helpers find every assigner of a detector config, set the threshold where it can be set, and
say where it cannot.
"""
import copy
import inspect
import logging
from typing import Iterator, List, Optional, Tuple

from mmdet.models.task_modules import HungarianAssigner, MaxIoUAssigner
from mmengine.logging import print_log
from torch import nn

from ssl_det.registry import TASK_UTILS


def iter_assigners(train_cfg, path: str = 'train_cfg') -> Iterator[Tuple[str, dict]]:
    """Every ``(config path, assigner dict)`` under a detector's ``train_cfg`` (lists of
    cascade stages and nested dicts included; keys ending in ``assigner``)."""
    if isinstance(train_cfg, dict):
        for key, value in train_cfg.items():
            if key.endswith('assigner') and isinstance(value, dict) and 'type' in value:
                yield f'{path}.{key}', value
            else:
                yield from iter_assigners(value, f'{path}.{key}')
    elif isinstance(train_cfg, (list, tuple)):
        for i, value in enumerate(train_cfg):
            yield from iter_assigners(value, f'{path}.{i}')


def _resolve(assigner_type):
    return TASK_UTILS.get(assigner_type) if isinstance(assigner_type, str) else assigner_type


def _ignore_default(assigner_type) -> Optional[float]:
    """The assigner class's default ``ignore_iof_thr``, or None when it has no such
    argument (it never reads ignored boxes)."""
    cls = _resolve(assigner_type)
    if cls is None:
        return None
    param = inspect.signature(cls.__init__).parameters.get('ignore_iof_thr')
    if param is None:
        return None
    return param.default if param.default is not inspect.Parameter.empty else -1.0


def configure_ignored_band(detector: dict, ignore_iof_thr: Optional[float]) -> dict:
    """Make the detector's assigners ignore the policy's ambiguous band.

    Args:
        detector (dict): the detector config (not modified).
        ignore_iof_thr (float, optional): the threshold to set on every assigner that
            supports one and has it at or below 0 (a log line names each key); mmdet's
            ``MaxIoUAssigner`` also becomes :class:`IgnoreAwareMaxIoUAssigner` (mmdet's
            ignores nothing in an image without ground truth). None changes nothing and
            warns instead.

    Returns:
        dict: the detector config to build.
    """
    detector = copy.deepcopy(detector)
    assigners = list(iter_assigners(detector.get('train_cfg'), 'detector.train_cfg'))
    unused: List[str] = []
    for path, cfg in assigners:
        if ignore_iof_thr is not None and _resolve(cfg['type']) is MaxIoUAssigner:
            cfg['type'] = 'ssl_det.IgnoreAwareMaxIoUAssigner'
            print_log(f'TeacherStudent: {path}.type = ssl_det.IgnoreAwareMaxIoUAssigner '
                      '(MaxIoUAssigner that also ignores the band in images without a '
                      'confident pseudo box).', logger='current')
        default = _ignore_default(cfg['type'])
        if default is None:
            if _resolve(cfg['type']) is HungarianAssigner:
                unused.append(
                    f'{path} ({cfg["type"]}: one-to-one matching, as in DETR, DINO and '
                    'Deformable DETR, treats the confident pseudo boxes as the whole ground '
                    'truth and trains every other query as background, so no band can be '
                    'ignored)')
            else:
                unused.append(f'{path} ({cfg["type"]} has no ignore_iof_thr)')
            continue
        current = cfg.get('ignore_iof_thr', default)
        if current is not None and current > 0:
            continue
        if ignore_iof_thr is None:
            unused.append(f'{path}.ignore_iof_thr = {current}')
            continue
        cfg['ignore_iof_thr'] = ignore_iof_thr
        print_log(f'TeacherStudent: the pseudo-label policy ignores an ambiguous band; set '
                  f'{path}.ignore_iof_thr = {ignore_iof_thr} (was {current}) so that the '
                  'band is neither foreground nor background.', logger='current')
    if not assigners:
        unused.append(f'the {detector.get("type")} config has no assigner in train_cfg: '
                      'its head does not read ignored_instances')
    if unused:
        print_log(
            'TeacherStudent: the pseudo-label policy ignores an ambiguous band, but the '
            'detector will train it as BACKGROUND: ' + '; '.join(unused) + '. Set a '
            'positive ignore_iof_thr on those assigners (or TeacherStudent(ignore_iof_thr='
            '0.5) to set it for you), or use a policy without a band: '
            "pseudo_label=dict(type='FixedThreshold', score_thr=...).",
            logger='current', level=logging.WARNING)
    return detector


def detector_num_classes(detector: nn.Module) -> Optional[int]:
    """The number of object classes a built mmdet detector predicts, or None if unknown."""
    heads = []
    roi_head = getattr(detector, 'roi_head', None)
    if roi_head is not None:
        bbox_head = getattr(roi_head, 'bbox_head', None)
        heads.extend(bbox_head if isinstance(bbox_head, nn.ModuleList) else [bbox_head])
    heads.append(getattr(detector, 'bbox_head', None))
    for head in heads:
        if head is not None and isinstance(getattr(head, 'num_classes', None), int):
            return head.num_classes
    return None


def check_num_classes(policy: nn.Module, detector: nn.Module) -> None:
    """Raise a ValueError when a per-class policy and the detector disagree on classes."""
    expected = detector_num_classes(detector)
    got = getattr(policy, 'num_classes', None)
    if expected is not None and got is not None and got != expected:
        raise ValueError(
            f'The pseudo-label policy {type(policy).__name__} has thresholds for {got} classes '
            f'but the detector predicts {expected}: set pseudo_label.num_classes = {expected} '
            '(or give one threshold per class, or a single float for all).')
