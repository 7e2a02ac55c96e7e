"""Teacher–student training for any mmdet detector (one-stage, two-stage, with masks)."""
import copy
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmdet.models.detectors import BaseDetector
from mmdet.models.utils import rename_loss_dict, reweight_loss_dict
from mmdet.structures import SampleList
from mmdet.structures.mask import BitmapMasks
from mmengine.logging import MessageHub, print_log
from mmengine.structures import InstanceData
from torch import Tensor

from ssl_det.models.utils.detector_checks import check_num_classes, configure_ignored_band
from ssl_det.models.utils.pseudo_instances import masks_to_bitmap, project_instances
from ssl_det.models.utils.pseudo_mixing import PseudoMixer
from ssl_det.models.utils.starving import SparseTeacherWatch, StarvingWatch
from ssl_det.models.utils.sup_loss_guard import SupLossGuard
from ssl_det.models.utils.teacher_views import (check_flips_2d, check_view_iou_thr,
                                                flip_boxes_2d, flip_images, fuse_views,
                                                log_views_per_box)
from ssl_det.registry import MODELS, TASK_UTILS


def sum_losses(losses: dict) -> Tensor:
    """The total of a detector's loss dict (the values whose key holds 'loss'; a value may
    be a list of per-level tensors), as mmengine's ``parse_losses`` sums it."""
    total = [v.mean() if isinstance(v, Tensor) else sum(t.mean() for t in v)
             for k, v in losses.items() if 'loss' in k]
    return sum(total) if total else torch.zeros(())


@MODELS.register_module()
class TeacherStudent(BaseDetector):
    """A student trained by gradient descent and a teacher that labels unlabeled images.

    A batch holds three branches (mmdet's ``MultiBranch`` names): ``sup`` (labeled
    images), ``unsup_teacher`` (the weak view of unlabeled images) and ``unsup_student``
    (their strong view). The teacher (eval mode, no gradients; an EMA of the student kept
    by ``MeanTeacherHook``) predicts on the weak view; ``pseudo_label`` splits its
    predictions into pseudo ground truth and an ignored band; both are mapped into the
    strong view with the views' ``homography_matrix``; the student's loss on them is
    weighted by ``unsup_weight``.

    Args:
        detector (dict): config of the mmdet detector used as student and teacher.
        pseudo_label (dict): a pseudo-label policy from TASK_UTILS. Default:
            ``dict(type='DualThreshold', high=0.9, low=0.5)``.
        unsup_weight (float): weight of the unlabeled losses. Default: 2.0.
        sup_weight (float): weight of the labeled losses. Default: 1.0.
        unsup_loss_keys (list[str], optional): keep only unlabeled losses whose name
            contains one of these strings (e.g. ``['loss_cls']`` trains the student's
            classification alone on pseudo labels); None keeps all. Default: None.
        min_pseudo_size (float): pseudo boxes narrower or shorter than this (pixels, in the
            strong view after projection and clipping) are dropped and counted. Default: 2.
        predict_on (str): 'teacher' or 'student', the network used by ``predict``.
            Default: 'teacher'.
        ignore_iof_thr (float, optional): when the policy has an ignored band, every
            assigner of the detector that supports ``ignore_iof_thr`` but has it at or below
            0 (mmdet's base configs say -1) gets this value, with a log line naming the key,
            and mmdet's ``MaxIoUAssigner`` becomes ``IgnoreAwareMaxIoUAssigner`` (which also
            ignores the band in images without a confident pseudo box). None leaves the
            detector as configured. Either way a warning names the assigners and heads that
            would train the band as background. Default: 0.5.
        starving_iters (int): after this many consecutive unlabeled iterations without a
            single confident pseudo box (the unlabeled loss is then off), log a warning with
            the teacher's best score and the fixes. Default: 50.
        sparse_ratio (float): warn (after ``starving_iters`` unlabeled iterations, and
            then less and less often) while the teacher's confident pseudo boxes per
            unlabeled image stay below this fraction of the labeled images' boxes per image
            (logged each iteration as ``pseudo/confident_per_labeled``); 0 never warns.
            Default: 0.25.
        sup_loss_guard (dict, optional): arguments of ``SupLossGuard``, which halves the
            unlabeled loss's weight while the labeled loss runs ``rise`` (1.3) times above
            its level at the start of unlabeled training (logged as ``unsup_weight_scale``);
            None turns it off. Default: ``dict()`` (``SupLossGuard``'s defaults).
        mixing (dict, optional): arguments of ``PseudoMixer``: the student learns on
            Mixup and Mosaic images of the pseudo-labeled strong views and views cached
            from earlier batches (MixPL), with the pseudo and ignored boxes (and masks)
            carried exactly; losses logged as ``unsup_mixup_*`` / ``unsup_mosaic_*``. Once
            the cache is full the Mixup batch replaces the plain strong views' loss, as in
            MixPL (``replace_strong=False`` adds the mixed batches to it instead). None
            (the default) mixes nothing.
        strong_bn_stats (bool): whether the student's BatchNorm running statistics (what
            it normalises with at test time, and what the EMA teacher inherits) also follow
            the strong views and mixed images. False: those batches are normalised with
            their own statistics but leave the running ones to the labeled images, whose
            augmentation is the test images' kind. Default: False.
        log_per_class (bool): log per-class pseudo-label counts and thresholds to the
            message hub (``train/pseudo/...``) every iteration. Default: True.
        teacher_views (list[str]): flips of each weak image the teacher also labels
            (``'horizontal'``, ``'vertical'``, ``'diagonal'``), in a second pass per flip;
            each flip's boxes are flipped back and fused with the weak view's
            (:mod:`~ssl_det.models.utils.teacher_views`: a box every view sees keeps its
            mean score, one a single view of two sees keeps half). Boxes only: a detector
            with a mask head is refused. Default: none.
        view_iou_thr (float): IoU at which the views' boxes of a class fuse. Default: 0.5.
        data_preprocessor (dict): usually ``MultiBranchDataPreprocessor``.
        init_cfg (dict, optional): initialisation config.
    """

    def __init__(self,
                 detector: dict,
                 pseudo_label: Optional[dict] = None,
                 unsup_weight: float = 2.0,
                 sup_weight: float = 1.0,
                 unsup_loss_keys: Optional[List[str]] = None,
                 min_pseudo_size: float = 2.0,
                 predict_on: str = 'teacher',
                 ignore_iof_thr: Optional[float] = 0.5,
                 starving_iters: int = 50,
                 sparse_ratio: float = 0.25,
                 sup_loss_guard: Optional[dict] = dict(),
                 mixing: Optional[dict] = None,
                 strong_bn_stats: bool = False,
                 log_per_class: bool = True,
                 teacher_views: Sequence[str] = (),
                 view_iou_thr: float = 0.5,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.pseudo_label = TASK_UTILS.build(
            pseudo_label or dict(type='DualThreshold', high=0.9, low=0.5))
        if self.pseudo_label.score_source != 'teacher':
            raise ValueError(
                f'{type(self.pseudo_label).__name__} adapts to '
                f'{self.pseudo_label.score_source!r} scores, which only TeacherStudent3D '
                'collects; use DynamicThreshold for 2D detectors.')
        if self.pseudo_label.can_ignore():
            detector = configure_ignored_band(detector, ignore_iof_thr)
        self._build_members(detector)
        self._build_watches(starving_iters, sparse_ratio, sup_loss_guard)
        if predict_on not in ('teacher', 'student'):
            raise ValueError(f"predict_on must be 'teacher' or 'student', got {predict_on!r}")
        self.predict_on = predict_on
        self.unsup_weight = float(unsup_weight)
        self.sup_weight = float(sup_weight)
        self.unsup_loss_keys = list(unsup_loss_keys) if unsup_loss_keys else None
        self.min_pseudo_size = float(min_pseudo_size)
        self.log_per_class = log_per_class
        self.with_pseudo_masks = bool(getattr(self.student, 'with_mask', False))
        self.mixer = PseudoMixer(**mixing) if mixing is not None else None
        self.strong_bn_stats = bool(strong_bn_stats)
        self.teacher_views = check_flips_2d(teacher_views)
        if self.teacher_views and self.with_pseudo_masks:
            raise ValueError('teacher_views fuse boxes, not masks; the detector has a mask '
                             'head')
        self.view_iou_thr = check_view_iou_thr(view_iou_thr)
        # Set by MeanTeacherHook: False during burn-in (supervised loss only).
        self.unsup_active = True
        # The last strong-view batch with its pseudo instances, for PseudoLabelVisHook.
        self.latest_pseudo: Optional[dict] = None
        self.latest_mixed: Optional[dict] = None  # the last Mosaic (or Mixup) batch

    def _build_members(self, detector: dict) -> None:
        """Student and teacher from one detector config, the teacher a frozen copy of the
        student; the policy must threshold the detector's classes."""
        self.student = MODELS.build(copy.deepcopy(detector))
        self.teacher = MODELS.build(copy.deepcopy(detector))
        self.teacher.load_state_dict(self.student.state_dict())
        self.freeze(self.teacher)
        check_num_classes(self.pseudo_label, self.student)

    def _build_watches(self, starving_iters: int, sparse_ratio: float,
                       sup_loss_guard: Optional[dict]) -> None:
        """The starving-teacher and sparse-teacher watches and the labeled-loss guard."""
        self.starving = StarvingWatch(starving_iters)
        self.sparse = SparseTeacherWatch(sparse_ratio, max(starving_iters, 1))
        self.unsup_guard = SupLossGuard(**(sup_loss_guard if sup_loss_guard is not None
                                           else dict(rise=None)))

    # whether the labeled batch updates the student's BatchNorm running statistics while a
    # strong batch is trained beside it (TeacherStudent3D's ``labeled_bn_stats``)
    labeled_bn_stats = True

    @staticmethod
    def freeze(model: nn.Module) -> None:
        model.eval()
        for param in model.parameters():
            param.requires_grad = False

    def train(self, mode: bool = True) -> 'TeacherStudent':
        super().train(mode)
        self.teacher.eval()  # the teacher never trains: BN statistics come from the EMA
        return self

    # ------------------------------------------------------------------ training
    def loss(self, multi_batch_inputs: Dict[str, Tensor],
             multi_batch_data_samples: Dict[str, SampleList]) -> dict:
        losses = {}
        with_unsup = self.unsup_active and multi_batch_inputs.get('unsup_teacher') is not None
        if multi_batch_inputs.get('sup') is not None:
            # without a strong batch this iteration the labeled one always updates them
            with self.student_bn_stats(self.labeled_bn_stats or not with_unsup):
                sup = self.student.loss(multi_batch_inputs['sup'],
                                        multi_batch_data_samples['sup'])
            losses.update(self.finish_sup_losses(sup, multi_batch_data_samples['sup'],
                                                 with_unsup))
        if with_unsup:
            views = (multi_batch_inputs['unsup_teacher'], multi_batch_data_samples['unsup_teacher'],
                     multi_batch_inputs['unsup_student'], multi_batch_data_samples['unsup_student'])
            with self.student_bn_stats(self.strong_bn_stats):
                if self.mixer is not None and self.mixer.replaces_strong:
                    # MixPL's rule: the Mixup batch below holds every strong view (blended),
                    # so the plain strong views only receive their pseudo labels
                    losses.update(self.pseudo_labels_only(*views))
                else:
                    losses.update(self.unsup_loss(*views))
                if self.mixer is not None:
                    # unsup_loss wrote the pseudo and ignored instances into the strong
                    # samples
                    losses.update(self.mixed_unsup_losses(
                        multi_batch_inputs['unsup_student'],
                        multi_batch_data_samples['unsup_student']))
        return losses

    def finish_sup_losses(self, sup: dict, samples: SampleList, with_unsup: bool) -> dict:
        """The labeled batch's losses weighted and prefixed (``sup_``); its labels counted
        by the policy and the sparsity watch, its loss by the unlabeled loss's guard."""
        labeled = self.labeled_labels(samples)
        self.pseudo_label.update_labeled(labeled, len(samples))
        self.sparse.update_labeled(len(labeled), len(samples))
        if with_unsup:
            self.unsup_guard.update(sum_losses(sup))
        return rename_loss_dict('sup_', reweight_loss_dict(sup, self.sup_weight))

    @contextmanager
    def student_bn_stats(self, update: bool) -> Iterator[None]:
        """With ``update=False``, the student's BatchNorm layers in training mode normalise
        with each batch's statistics but leave their running statistics (and batch count)
        as they were: momentum 0 for the duration."""
        saved = []
        if not update:
            for module in self.student.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training \
                        and module.track_running_stats:
                    saved.append((module, module.momentum, module.num_batches_tracked.clone()))
                    module.momentum = 0.0
        try:
            yield
        finally:
            for module, momentum, tracked in saved:
                module.momentum = momentum
                module.num_batches_tracked.copy_(tracked)

    def mixed_unsup_losses(self, strong_inputs: Tensor, strong_samples: SampleList) -> dict:
        """The student's loss on the mixer's Mixup and Mosaic batches of the pseudo-labeled
        strong views (``unsup_mixup_*``, ``unsup_mosaic_*``), weighted like the unlabeled
        loss times the mixer's weight; a batch without a pseudo box weighs 0."""
        losses = {}
        batches = self.mixer.mixed_batches(strong_inputs, strong_samples)
        for name, inputs, samples in batches:
            num_pseudo = sum(len(s.gt_instances) for s in samples)
            weight = self.unsup_weight * self.mixer.weights[name] if num_pseudo else 0.0
            part = {k: v for k, v in self.student.loss(inputs, samples).items()
                    if not self.skipped_on_mixed(k)}
            losses.update(self.finish_unsup_losses(part, weight, {}, inputs.device,
                                                   f'unsup_{name}_'))
            losses[f'pseudo_{name}_boxes_per_img'] = torch.tensor(
                num_pseudo / max(len(samples), 1), device=inputs.device)
        if batches:
            losses['pseudo_mix_dropped'] = torch.tensor(float(self.mixer.num_dropped),
                                                        device=strong_inputs.device)
            self.latest_mixed = dict(inputs=batches[-1][1].detach(),
                                     data_samples=batches[-1][2])
        return losses

    @staticmethod
    def labeled_labels(samples: SampleList) -> Tensor:
        """Class labels of every ground-truth box of the labeled samples (what a policy's
        ``update_labeled`` counts)."""
        if not samples:
            return torch.zeros(0, dtype=torch.long)
        return torch.cat([s.gt_instances.labels for s in samples])

    def unsup_loss(self, weak_inputs: Tensor, weak_samples: SampleList, strong_inputs: Tensor,
                   strong_samples: SampleList) -> dict:
        """The student's weighted loss on the teacher's pseudo labels (``unsup_`` keys)."""
        strong_samples, stats = self.pseudo_instances(weak_inputs, weak_samples, strong_samples)
        losses = self.loss_by_pseudo_instances(strong_inputs, strong_samples, stats)
        self.latest_pseudo = dict(inputs=strong_inputs.detach(), data_samples=strong_samples)
        return losses

    def pseudo_labels_only(self, weak_inputs: Tensor, weak_samples: SampleList,
                           strong_inputs: Tensor, strong_samples: SampleList) -> dict:
        """The teacher's pseudo and ignored instances written into the strong samples, as
        :meth:`unsup_loss` does, without the student's loss on the strong views (the
        mixer's Mixup batch takes its place); returns the pseudo-label statistics."""
        stats = self.write_pseudo_labels(weak_inputs, weak_samples, strong_samples)
        self.latest_pseudo = dict(inputs=strong_inputs.detach(), data_samples=strong_samples)
        return self.finish_unsup_losses({}, self.unsup_weight, stats, strong_inputs.device)

    def write_pseudo_labels(self, weak_inputs: Tensor, weak_samples: SampleList,
                            strong_samples: SampleList) -> dict:
        """The pseudo and ignored instances written into the strong samples (what the
        method's :meth:`unsup_loss` trains on); returns the pseudo-label statistics."""
        return self.pseudo_instances(weak_inputs, weak_samples, strong_samples)[1]

    @torch.no_grad()
    def teacher_predict(self, inputs: Tensor, data_samples: SampleList) -> List[InstanceData]:
        """Teacher predictions in the weak view's pixel frame (no rescaling); with
        ``teacher_views``, fused with the flipped views' (:meth:`fuse_teacher_views`)."""
        self.teacher.eval()
        results = self.teacher.predict(inputs, copy.deepcopy(data_samples), rescale=False)
        return self.fuse_teacher_views(inputs, data_samples,
                                       [r.pred_instances for r in results])

    @torch.no_grad()
    def fuse_teacher_views(self, inputs: Tensor, data_samples: SampleList,
                           detections: List[InstanceData]) -> List[InstanceData]:
        """The teacher's ``detections`` on the weak images fused with its detections on
        each flip of them (``teacher_views``), flipped back; unchanged without views."""
        if not self.teacher_views:
            return detections
        shapes = [tuple(s.img_shape[:2]) for s in data_samples]
        views = [detections]
        for direction in self.teacher_views:
            results = self.teacher.predict(flip_images(inputs, shapes, direction),
                                           copy.deepcopy(data_samples), rescale=False)
            views.append([InstanceData(bboxes=flip_boxes_2d(r.pred_instances.bboxes, shape,
                                                            direction),
                                       scores=r.pred_instances.scores,
                                       labels=r.pred_instances.labels)
                          for r, shape in zip(results, shapes)])
        fused = []
        for per_view in zip(*views):
            boxes, scores, labels, seen = fuse_views(
                [p.bboxes for p in per_view], [p.scores for p in per_view],
                [p.labels for p in per_view], self.view_iou_thr, image=True)
            fused.append(InstanceData(bboxes=boxes, scores=scores, labels=labels,
                                      num_views=seen))
        log_views_per_box([f.num_views for f in fused])
        return fused

    @torch.no_grad()
    def pseudo_instances(self, weak_inputs: Tensor, weak_samples: SampleList,
                         strong_samples: SampleList) -> Tuple[SampleList, dict]:
        """Teacher predictions on the weak view → pseudo and ignored instances on the strong
        view, written into ``strong_samples`` (``gt_instances``, ``ignored_instances``)."""
        predictions = self.teacher_predict(weak_inputs, weak_samples)
        scores = torch.cat([p.scores for p in predictions])
        labels = torch.cat([p.labels for p in predictions])
        self.pseudo_label.update(scores, labels, num_images=len(predictions))
        split = self.pseudo_label(scores, labels)
        sizes = [len(p) for p in predictions]
        num_dropped = 0
        for pred, confident, ignored, weak, strong in zip(
                predictions, split.confident.split(sizes), split.ignored.split(sizes),
                weak_samples, strong_samples):
            if self.with_pseudo_masks and 'masks' in pred:
                pred.masks = masks_to_bitmap(pred.masks)
            args = (weak.homography_matrix, strong.homography_matrix, strong.img_shape,
                    self.min_pseudo_size)
            pseudo, dropped_c = project_instances(pred[confident], *args,
                                                  with_masks=self.with_pseudo_masks)
            ignore, dropped_i = project_instances(pred[ignored], *args)
            num_dropped += dropped_c + dropped_i
            strong.gt_instances = self._as_ground_truth(pseudo, strong)
            strong.ignored_instances = self._as_ground_truth(ignore, strong, masks=False)
        stats = self.split_stats(split, scores, labels,
                                 sum(len(s.gt_instances) for s in strong_samples),
                                 len(strong_samples))
        stats['pseudo/num_dropped_degenerate'] = float(num_dropped)
        return strong_samples, stats

    def split_stats(self, split, scores: Tensor, labels: Tensor, num_pseudo: int,
                    num_images: Optional[int] = None) -> dict:
        """The policy's totals (returned, to be logged with the losses); per-class counts and
        thresholds go straight to the message hub when ``log_per_class``. Feeds the
        starving-teacher and sparse-teacher watches with ``num_pseudo``, the confident
        pseudo boxes that reached the strong views of ``num_images`` unlabeled images."""
        stats = self.pseudo_label.log_stats(split, labels, per_class=False)
        stats['pseudo/starving_iters'] = float(
            self.starving.update(num_pseudo, scores, self.pseudo_label))
        if num_images:
            ratio = self.sparse.update(num_pseudo, num_images, self.pseudo_label,
                                       warn=self.starving.streak == 0)
            if ratio == ratio:  # not NaN: a labeled box was seen
                stats['pseudo/confident_per_labeled'] = ratio
        if self.log_per_class:
            hub = MessageHub.get_current_instance()
            for key, value in self.pseudo_label.log_stats(split, labels).items():
                if key not in stats:  # the totals travel with the losses
                    hub.update_scalar(f'train/{key}', value)
        return stats

    def _as_ground_truth(self, instances: InstanceData, sample,
                         masks: bool = True) -> InstanceData:
        """Keep the fields a detector's loss reads (boxes, labels, masks when trained)."""
        gt = InstanceData(metainfo=dict(img_shape=sample.img_shape))
        gt.bboxes = instances.bboxes if len(instances) else instances.bboxes.new_zeros((0, 4))
        gt.labels = instances.labels
        if masks and self.with_pseudo_masks:
            if 'masks' in instances:
                gt.masks = instances.masks
            else:
                h, w = sample.img_shape[:2]
                gt.masks = BitmapMasks(np.zeros((0, h, w), np.uint8), h, w)
        return gt

    def loss_by_pseudo_instances(self, strong_inputs: Tensor, strong_samples: SampleList,
                                 stats: dict) -> dict:
        num_pseudo = sum(len(s.gt_instances) for s in strong_samples)
        losses = self.student.loss(strong_inputs, strong_samples)
        # A batch without a single pseudo box would only teach "background everywhere",
        # which is how an under-confident teacher makes the student collapse.
        weight = self.unsup_weight if num_pseudo > 0 else 0.0
        return self.finish_unsup_losses(losses, weight, stats, strong_inputs.device)

    def skipped_on_mixed(self, key: str) -> bool:
        """Whether the mixed batches leave out the student loss ``key`` (none here: their
        pseudo boxes train what the strong views' train)."""
        return False

    def finish_unsup_losses(self, losses: dict, weight: float, stats: dict, device,
                            prefix: str = 'unsup_') -> dict:
        """Keep the ``unsup_loss_keys`` losses, weight them, prefix every key with
        ``prefix``, and add the pseudo-label statistics (names without 'loss', so logged
        but not summed into the loss)."""
        if self.unsup_loss_keys is not None:
            losses = {k: v for k, v in losses.items()
                      if 'loss' not in k or any(key in k for key in self.unsup_loss_keys)}
        scale = float(self.unsup_guard.scale)
        losses = rename_loss_dict(prefix, reweight_loss_dict(losses, weight * scale))
        losses.update({key.replace('pseudo/', 'pseudo_'): torch.tensor(value, device=device)
                       for key, value in stats.items()})
        if self.unsup_guard.rise is not None:
            losses['unsup_weight_scale'] = torch.tensor(scale, device=device)
        return losses

    # ------------------------------------------------------------------ inference
    def _active(self) -> nn.Module:
        return self.teacher if self.predict_on == 'teacher' else self.student

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        return self._active().predict(batch_inputs, batch_data_samples, rescale=rescale)

    def _forward(self, batch_inputs: Tensor, batch_data_samples: SampleList = None):
        return self._active()._forward(batch_inputs, batch_data_samples)

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor]:
        return self._active().extract_feat(batch_inputs)

    # ------------------------------------------------------------------ checkpoints
    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict,
                              strict: bool, missing_keys: list, unexpected_keys: list,
                              error_msgs: list) -> None:
        """A plain detector checkpoint (``load_from``) fills both teacher and student."""
        own = [k for k in state_dict if k.startswith(prefix)]
        if own and not any(k[len(prefix):].startswith(('teacher.', 'student.')) for k in own):
            print_log('loading a plain detector checkpoint into both teacher and student',
                      logger='current')
            for key in own:
                value = state_dict.pop(key)
                name = key[len(prefix):]
                state_dict[f'{prefix}teacher.{name}'] = value
                state_dict[f'{prefix}student.{name}'] = value
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)
