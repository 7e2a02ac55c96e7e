"""Soft Teacher (Xu et al., ICCV 2021) for mmdet two-stage detectors, with masks."""
from typing import List, Optional, Tuple

import torch
from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
from mmdet.models.utils import reweight_loss_dict
from mmdet.structures import DetDataSample, SampleList
from mmdet.structures.bbox import bbox2roi
from mmengine.structures import InstanceData
from torch import Tensor

from ssl_det.models.detectors.teacher_student import TeacherStudent
from ssl_det.models.utils.pseudo_instances import masks_to_bitmap, project_instances
from ssl_det.registry import MODELS
from .background import (soft_background_weights, student_to_teacher_boxes,
                         teacher_background_scores, teacher_class_scores)
from .losses import (positive_regression_loss, sample_proposals, soft_classification_loss,
                     soft_negative_classification_loss, stage_parts)
from .selection import select_pseudo_labels
from .uncertainty import jitter_box_uncertainty


@MODELS.register_module()
class SoftTeacher(TeacherStudent):
    """Soft Teacher for two-stage detectors with a standard or cascade RoI head (Faster,
    Mask and Cascade R-CNN), trained as in the paper, with ssl_det's pseudo-label policies.

    On unlabeled images the teacher predicts on the weak view; detections scoring at least
    ``initial_score_thr`` are kept and sorted (see :mod:`.selection`): the RPN learns from
    boxes over ``rpn_pseudo_thr``; the RoI classifier (and mask head) from the policy's
    confident boxes, with its ambiguous band ignored; the RoI box regression from boxes
    whose box-jitter uncertainty (:mod:`.uncertainty`) is below ``reg_pseudo_thr``.
    Student proposals sampled as background are weighted by the teacher's background
    probability of the same region (:mod:`.background`) and the classification loss is
    normalised by the weights' sum. With a mask head, the teacher's masks of confident boxes
    are warped into the strong view with the boxes and train the student's mask head.

    The maths is mmdet's ``SoftTeacher``; the work is less (:mod:`.losses`): the regression
    pass sends only its positive samples through the RoI head, the teacher scores only the
    background samples, and the jitter refinement is one batched RoI pass. A cascade (which
    mmdet's ``SoftTeacher`` does not support) applies both losses at every stage: the
    classification chain and the regression chain each refine their own samples for the
    next stage, as ``CascadeRoIHead.loss`` does, so regression before the last stage needs
    every sample's prediction and only the last stage is positive-only.

    Args:
        detector (dict): an mmdet two-stage detector whose ``roi_head`` is a
            ``StandardRoIHead`` or a ``CascadeRoIHead`` (or a subclass).
        pseudo_label (dict): policy for the classification pseudo boxes. Default:
            ``FixedThreshold(score_thr=0.9)`` (mmdet's ``cls_pseudo_thr``).
        initial_score_thr (float): teacher detections below it are dropped. Default: 0.5.
        rpn_pseudo_thr (float): score needed to train the RPN. Default: 0.9.
        reg_pseudo_thr (float): uncertainty under which a box trains regression. Default:
            0.02.
        jitter_times (int): jittered copies per box. Default: 10.
        jitter_scale (float): jitter std relative to box size. Default: 0.06.
        soft_background (bool): weight background samples by the teacher's background
            score. Default: True.
        background_power (float): with ``soft_background``, a background sample's weight
            is the teacher's background score to this power. 1 is Soft Teacher's (and
            mmdet's) weight; a larger power leaves the weight of proposals the teacher is
            sure are background (score near 1) nearly whole and cuts the weight of those it
            doubts, where the objects it missed lie (at power 8: 0.99 -> 0.92, 0.9 -> 0.43,
            0.7 -> 0.06). Default: 1.0.
        soft_negatives (bool): each background sample learns the teacher's class
            distribution on it (soft cross-entropy) instead of the background label at
            the teacher's background score as weight: the objects the teacher half-saw
            are taught as half-objects rather than as down-weighted background. Replaces
            ``soft_background``'s weighting; needs a softmax box classifier. On DeepPCB
            it lost 0.010 mAP to the weights (docs/benchmarks.md). Default: False.
        rpn_ignore_unconfident (bool): classification pseudo boxes under
            ``rpn_pseudo_thr`` are ignored by the RPN's assigner, as the ignored band is,
            instead of being background there (mmdet's Soft Teacher teaches the RPN that
            a box the RoI head learns as an object is not one). Default: False.
        unsup_weight (float): weight of the unlabeled losses. Default: 4.0 (mmdet's).
        Other args: as :class:`TeacherStudent`.
    """

    def __init__(self,
                 detector: dict,
                 pseudo_label: Optional[dict] = None,
                 initial_score_thr: float = 0.5,
                 rpn_pseudo_thr: float = 0.9,
                 reg_pseudo_thr: float = 0.02,
                 jitter_times: int = 10,
                 jitter_scale: float = 0.06,
                 soft_background: bool = True,
                 background_power: float = 1.0,
                 soft_negatives: bool = False,
                 rpn_ignore_unconfident: bool = False,
                 unsup_weight: float = 4.0,
                 **kwargs) -> None:
        super().__init__(
            detector,
            pseudo_label=pseudo_label or dict(type='FixedThreshold', score_thr=0.9),
            unsup_weight=unsup_weight,
            **kwargs)
        roi_head = getattr(self.student, 'roi_head', None)
        if not isinstance(roi_head, (StandardRoIHead, CascadeRoIHead)) or \
                not roi_head.with_bbox:
            raise TypeError(
                'SoftTeacher needs a two-stage detector with a StandardRoIHead or a '
                'CascadeRoIHead (Faster / Mask / Cascade R-CNN); got roi_head '
                f'{type(roi_head).__name__}. For other detectors use TeacherStudent.')
        if jitter_times < 2:
            raise ValueError(f'jitter_times must be >= 2 (an unbiased std), got {jitter_times}')
        self.initial_score_thr = float(initial_score_thr)
        self.rpn_pseudo_thr = float(rpn_pseudo_thr)
        self.reg_pseudo_thr = float(reg_pseudo_thr)
        self.jitter_times = int(jitter_times)
        self.jitter_scale = float(jitter_scale)
        self.soft_background = bool(soft_background)
        if not background_power > 0:
            raise ValueError(f'background_power must be > 0, got {background_power}')
        self.background_power = float(background_power)
        self.soft_negatives = bool(soft_negatives)
        if self.soft_negatives:
            heads = roi_head.bbox_head if isinstance(roi_head, CascadeRoIHead) else \
                [roi_head.bbox_head]
            if any(head.custom_activation or getattr(head.loss_cls, 'use_sigmoid', False)
                   for head in heads):
                raise ValueError('soft_negatives needs a softmax box classifier (the '
                                 "teacher's distributions are its targets)")
            if self.background_power != 1.0:
                raise ValueError('soft_negatives replaces the background weights; '
                                 'background_power has no effect with it')
        self.rpn_ignore_unconfident = bool(rpn_ignore_unconfident)

    # ------------------------------------------------------------------ teacher
    @torch.no_grad()
    def teacher_pseudo_labels(self, weak_inputs: Tensor, weak_samples: SampleList,
                              strong_samples: SampleList
                              ) -> Tuple[Tuple[Tensor], List[InstanceData], dict]:
        """Teacher detections on the weak view, selected and mapped into the strong view.

        Writes each strong sample's ``gt_instances`` (classification pseudo boxes, with
        masks when the detector has a mask head) and ``ignored_instances``.

        Returns:
            ``(teacher features, per-image strong-view instances with bool fields rpn / reg,
            stats)``.
        """
        self.teacher.eval()
        feats = self.teacher.extract_feat(weak_inputs)
        proposals = self.teacher.rpn_head.predict(feats, weak_samples, rescale=False)
        detections = self.teacher.roi_head.predict(feats, proposals, weak_samples,
                                                   rescale=False)
        # with teacher_views: fused with the flipped images' (the jitter check and the
        # background scores below use this view's features)
        detections = self.fuse_teacher_views(weak_inputs, weak_samples, detections)
        scores = torch.cat([d.scores for d in detections])
        labels = torch.cat([d.labels for d in detections])
        self.pseudo_label.update(scores, labels, num_images=len(detections))
        split = self.pseudo_label(scores, labels)

        # box-jitter uncertainty of every detection above the initial threshold
        sizes = [len(d) for d in detections]
        candidate = (scores >= self.initial_score_thr).split(sizes)
        metas = [s.metainfo for s in weak_samples]
        uncs = jitter_box_uncertainty(
            self.teacher.roi_head, feats, [d.bboxes[c] for d, c in zip(detections, candidate)],
            [d.labels[c] for d, c in zip(detections, candidate)], metas, self.jitter_times,
            self.jitter_scale)
        uncertainty = scores.new_full(scores.shape, float('inf'))
        uncertainty[torch.cat(candidate)] = torch.cat(uncs).to(scores.dtype)
        selection = select_pseudo_labels(scores, split, uncertainty, self.initial_score_thr,
                                         self.rpn_pseudo_thr, self.reg_pseudo_thr)

        others, num_dropped = [], 0
        masks_needed = self.with_pseudo_masks
        for det, unc, sel, weak, strong in zip(
                detections, uncertainty.split(sizes), zip(*(m.split(sizes) for m in selection)),
                weak_samples, strong_samples):
            cls, ignored, rpn, reg = sel[:4]
            args = (weak.homography_matrix, strong.homography_matrix, strong.img_shape,
                    self.min_pseudo_size)
            if masks_needed and 'masks' in det:
                det.masks = masks_to_bitmap(det.masks)
            confident, dropped_c = project_instances(det[cls], *args, with_masks=masks_needed)
            # a classification pseudo box the RPN does not learn from (ignored there)
            rpn_ignored = cls & ~rpn if self.rpn_ignore_unconfident else torch.zeros_like(cls)
            rest = InstanceData(bboxes=det.bboxes, labels=det.labels, scores=det.scores,
                                reg_unc=unc, ignored=ignored, rpn=rpn, reg=reg,
                                rpn_ignored=rpn_ignored)
            used = ignored | rpn | reg | rpn_ignored
            projected, dropped_r = project_instances(rest[used], *args)
            num_dropped += dropped_c + dropped_r
            strong.gt_instances = self._as_ground_truth(confident, strong)
            strong.ignored_instances = self._as_ground_truth(projected[projected.ignored],
                                                             strong, masks=False)
            others.append(projected)

        stats = self.split_stats(split, scores, labels,
                                 sum(len(s.gt_instances) for s in strong_samples),
                                 len(strong_samples))
        cand = selection.candidate
        stats.update({
            'pseudo/num_dropped_degenerate': float(num_dropped),
            'pseudo/num_rpn': float(selection.rpn.sum()),
            'pseudo/num_reg': float(selection.reg.sum()),
            'pseudo/mean_reg_unc': float(uncertainty[cand].mean()) if cand.any() else 0.0,
        })
        return feats, others, stats

    # ------------------------------------------------------------------ student
    def skipped_on_mixed(self, key: str) -> bool:
        """The mixed batches (``mixing``) carry the classification pseudo boxes, chosen by
        score alone. Added to the strong views' loss (``replace_strong=False``) they train
        the RPN and the RoI classifier, not the RoI box regression, which the strong views
        give only to boxes the jitter check trusts (``reg_pseudo_thr``): on DeepPCB (seed 0)
        mixing with that regression left AP75 at 0.307 against 0.354. With MixPL's rule
        (the Mixup batch replaces the strong views' loss) they are the only unlabeled loss
        and train everything, the regression too, as MixPL does."""
        if self.mixer is not None and self.mixer.replaces_strong:
            return False
        return key == 'loss_bbox' or key.endswith('.loss_bbox')

    def unsup_loss(self, weak_inputs: Tensor, weak_samples: SampleList, strong_inputs: Tensor,
                   strong_samples: SampleList) -> dict:
        teacher_feats, pseudo, stats = self.teacher_pseudo_labels(weak_inputs, weak_samples,
                                                                  strong_samples)
        feats = self.student.extract_feat(strong_inputs)
        losses, proposals = self.rpn_loss(feats, strong_samples, pseudo)
        reg_gts = [self._as_ground_truth(p[p.reg], s, masks=False)
                   for p, s in zip(pseudo, strong_samples)]
        roi_losses, bg_weight = self.roi_loss(feats, proposals, strong_samples, reg_gts,
                                              teacher_feats, weak_samples)
        losses.update(roi_losses)
        if bg_weight is not None:
            stats['pseudo/mean_bg_weight'] = bg_weight
        # A loss whose batch holds no pseudo box of its kind would only teach "background
        # everywhere" (the collapse of a teacher that scores nothing above the thresholds):
        # switch it off for this batch. Regression without boxes is already zero.
        has_cls = any(len(s.gt_instances) for s in strong_samples)
        has_rpn = any(bool(p.rpn.any()) for p in pseudo)
        for key in [k for k in losses if 'loss' in k and 'loss_bbox' not in k]:
            if not (has_rpn if 'rpn' in key else has_cls):
                losses.update(reweight_loss_dict({key: losses[key]}, 0.0))
        losses = self.finish_unsup_losses(losses, self.unsup_weight, stats,
                                          strong_inputs.device)
        self.latest_pseudo = dict(inputs=strong_inputs.detach(), data_samples=strong_samples)
        return losses

    def write_pseudo_labels(self, weak_inputs: Tensor, weak_samples: SampleList,
                            strong_samples: SampleList) -> dict:
        """Soft Teacher's selection (classification pseudo boxes, ignored boxes) written
        into the strong samples; returns its statistics."""
        return self.teacher_pseudo_labels(weak_inputs, weak_samples, strong_samples)[2]

    def rpn_loss(self, feats: Tuple[Tensor], strong_samples: SampleList,
                 pseudo: List[InstanceData]) -> Tuple[dict, List[InstanceData]]:
        """RPN loss on the boxes over ``rpn_pseudo_thr`` (class-agnostic) and the student's
        proposals."""
        rpn_samples = []
        for sample, instances in zip(strong_samples, pseudo):
            rpn_sample = DetDataSample(metainfo=sample.metainfo)
            gts = self._as_ground_truth(instances[instances.rpn], sample, masks=False)
            gts.labels = torch.zeros_like(gts.labels)
            rpn_sample.gt_instances = gts
            ignored = sample.ignored_instances
            if bool(instances.rpn_ignored.any()):
                extra = self._as_ground_truth(instances[instances.rpn_ignored], sample,
                                              masks=False)
                ignored = InstanceData.cat([ignored, extra])
            rpn_sample.ignored_instances = ignored
            rpn_samples.append(rpn_sample)
        cfg = self.student.train_cfg.get('rpn_proposal', self.student.test_cfg.rpn)
        losses, proposals = self.student.rpn_head.loss_and_predict(feats, rpn_samples,
                                                                   proposal_cfg=cfg)
        for key in list(losses):
            if 'loss' in key and 'rpn' not in key:
                losses[f'rpn_{key}'] = losses.pop(key)
        return losses, proposals

    def roi_loss(self, feats: Tuple[Tensor], proposals: List[InstanceData],
                 strong_samples: SampleList, reg_gts: List[InstanceData],
                 teacher_feats: Tuple[Tensor],
                 weak_samples: SampleList) -> Tuple[dict, Optional[float]]:
        """Soft-background classification (and mask) loss on the classification pseudo
        boxes, and box regression on the low-uncertainty ones; for a cascade, at every
        stage (``s{i}.`` keys, weighted by ``stage_loss_weights``), each chain of proposals
        refined by its own stage outputs as ``CascadeRoIHead.loss`` does."""
        roi_head = self.student.roi_head
        cascade = isinstance(roi_head, CascadeRoIHead)
        stages = list(range(roi_head.num_stages)) if cascade else [None]
        train_cfgs = roi_head.train_cfg if cascade else [self.student.train_cfg.rcnn]
        metas = [s.metainfo for s in strong_samples]
        teacher_metas = [s.metainfo for s in weak_samples]
        cls_gts = [s.gt_instances for s in strong_samples]
        ignored = [s.ignored_instances for s in strong_samples]
        cls_props = reg_props = [InstanceData(bboxes=p.bboxes) for p in proposals]
        losses, bg_sum, bg_count = {}, 0.0, 0
        for stage, train_cfg in zip(stages, train_cfgs):
            prefix = '' if stage is None else f's{stage}.'
            weight = 1.0 if stage is None else roi_head.stage_loss_weights[stage]
            bbox_head, forward = stage_parts(roi_head, stage)[2:]
            last = stage is None or stage == len(stages) - 1

            sampling = sample_proposals(roi_head, feats, cls_props, cls_gts, ignored, stage)
            rois = bbox2roi([res.priors for res in sampling])
            results = forward(feats, rois)
            targets = bbox_head.get_targets(sampling, train_cfg, concat=True)
            labels, label_weights = targets[:2]
            negative_targets = None
            if self.soft_negatives or self.soft_background:
                # the background samples, in the teacher's (weak) view
                boxes = [student_to_teacher_boxes(res.neg_priors, strong.homography_matrix,
                                                  weak.homography_matrix, weak.img_shape)
                         for res, strong, weak in zip(sampling, strong_samples, weak_samples)]
                if self.soft_negatives:
                    negative_targets = teacher_class_scores(
                        self.teacher.roi_head, teacher_feats, boxes, teacher_metas,
                        bbox_head.num_classes)
                    bg = negative_targets[:, -1]
                else:
                    bg = teacher_background_scores(self.teacher.roi_head, teacher_feats,
                                                   boxes, teacher_metas)
                    if self.background_power != 1.0:
                        bg = bg.clamp(min=0) ** self.background_power
                    label_weights = soft_background_weights(labels, label_weights, bg,
                                                            bbox_head.num_classes)
                bg_sum, bg_count = bg_sum + float(bg.sum()), bg_count + bg.numel()
            if negative_targets is not None:
                stage_losses = soft_negative_classification_loss(
                    bbox_head, results['cls_score'], labels, label_weights, negative_targets)
            else:
                stage_losses = soft_classification_loss(bbox_head, results['cls_score'],
                                                        labels, label_weights)
            if roi_head.with_mask:
                mask = (roi_head.mask_loss(stage, feats, sampling, cls_gts) if cascade else
                        roi_head.mask_loss(feats, sampling, results['bbox_feats'], cls_gts))
                stage_losses.update(mask['loss_mask'])

            reg_sampling = sample_proposals(roi_head, feats, reg_props, reg_gts, None, stage)
            if last:
                stage_losses['loss_bbox'] = positive_regression_loss(
                    roi_head, feats, reg_sampling, train_cfg, stage)
            else:
                # the next stage's proposals need every sample's box prediction: full pass
                reg_rois = bbox2roi([res.priors for res in reg_sampling])
                reg_results = forward(feats, reg_rois)
                reg_targets = bbox_head.get_targets(reg_sampling, train_cfg, concat=True)
                stage_losses['loss_bbox'] = bbox_head.loss(
                    None, reg_results['bbox_pred'], reg_rois, *reg_targets)['loss_bbox']
                with torch.no_grad():
                    cls_props = bbox_head.refine_bboxes(
                        sampling, dict(rois=rois, bbox_targets=targets, **results), metas)
                    reg_props = bbox_head.refine_bboxes(
                        reg_sampling, dict(rois=reg_rois, bbox_targets=reg_targets,
                                           **reg_results), metas)
            for key, value in stage_losses.items():
                losses[prefix + key] = value * weight if 'loss' in key else value
        mean_bg = bg_sum / bg_count if bg_count else None
        return losses, mean_bg
