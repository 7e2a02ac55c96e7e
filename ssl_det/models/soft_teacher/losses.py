"""The student's RoI losses on pseudo boxes, computed without wasted work.

mmdet's ``SoftTeacher`` runs the student's whole RoI head twice on unlabeled images: once on
proposals sampled against the classification pseudo boxes (it keeps ``loss_cls``) and once,
through ``roi_head.loss``, on proposals sampled against the regression pseudo boxes (it keeps
``loss_bbox``). The regression loss reads only the positive samples; the negatives enter it
only through its normaliser (the number of samples). So the second pass here samples the same
way (same assigner, sampler and random draws) and sends only the positives through RoIAlign
and the box head, with the normaliser taken from the full sample: the same loss and gradients
for a fraction of the work.
"""
from typing import List, Optional, Sequence

import torch
from mmdet.models.losses import accuracy
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.structures.bbox import bbox2roi, get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor


def stage_parts(roi_head, stage: Optional[int]):
    """``(bbox_assigner, bbox_sampler, bbox_head, forward(feats, rois))`` of a standard RoI
    head (``stage=None``) or of one stage of a cascade."""
    if stage is None:
        return (roi_head.bbox_assigner, roi_head.bbox_sampler, roi_head.bbox_head,
                roi_head._bbox_forward)
    return (roi_head.bbox_assigner[stage], roi_head.bbox_sampler[stage],
            roi_head.bbox_head[stage],
            lambda feats, rois: roi_head._bbox_forward(stage, feats, rois))


def sample_proposals(roi_head, feats: Sequence[Tensor], proposals: List[InstanceData],
                     gt_instances: List[InstanceData],
                     ignored_instances: Optional[List[Optional[InstanceData]]] = None,
                     stage: Optional[int] = None) -> List[SamplingResult]:
    """Assign the student's proposals to pseudo boxes and sample them, per image, exactly as
    ``StandardRoIHead.loss`` (or stage ``stage`` of ``CascadeRoIHead.loss``) does: same
    assigner, sampler and random draws."""
    assigner, sampler = stage_parts(roi_head, stage)[:2]
    if ignored_instances is None:
        ignored_instances = [None] * len(proposals)
    results = []
    for i, (props, gts, ignored) in enumerate(zip(proposals, gt_instances, ignored_instances)):
        priors = InstanceData(priors=props.bboxes)
        assign = assigner.assign(priors, gts, ignored)
        results.append(sampler.sample(assign, priors, gts,
                                      feats=[level[i][None] for level in feats]))
    return results


def soft_classification_loss(bbox_head, cls_score: Tensor, labels: Tensor,
                             label_weights: Tensor) -> dict:
    """The box head's classification loss with soft background weights, renormalised by the
    weights' sum (Soft Teacher, eq. 3): ``loss_cls`` as mmdet's ``BBoxHead.loss`` computes it
    (averaged over the samples of non-zero weight), times ``N / max(sum(weights), 1)``.

    Returns:
        dict: ``loss_cls`` and ``acc`` (or the loss's own accuracy keys).
    """
    losses = {}
    if cls_score.numel() == 0:
        losses['loss_cls'] = cls_score.sum()
        return losses
    avg_factor = max(float((label_weights > 0).sum()), 1.0)
    loss = bbox_head.loss_cls(cls_score, labels, label_weights, avg_factor=avg_factor)
    scale = len(label_weights) / max(float(label_weights.sum()), 1.0)
    if isinstance(loss, dict):
        losses.update({k: v * scale if 'loss' in k else v for k, v in loss.items()})
    else:
        losses['loss_cls'] = loss * scale
    if bbox_head.custom_activation:
        losses.update(bbox_head.loss_cls.get_accuracy(cls_score, labels))
    else:
        losses['acc'] = accuracy(cls_score, labels)
    return losses


def soft_negative_classification_loss(bbox_head, cls_score: Tensor, labels: Tensor,
                                      label_weights: Tensor, negative_targets: Tensor) -> dict:
    """The box head's softmax cross-entropy where each background sample learns the
    teacher's class distribution instead of the background label (soft negatives).

    A proposal the teacher scores 0.3 background and 0.7 "copper" is taught mostly copper,
    where Soft Teacher's weighting teaches it background at weight 0.3. Foreground samples
    keep their hard labels. The loss is averaged over the samples of non-zero weight and
    scaled by the classification loss's ``loss_weight``, as the hard loss is.

    Args:
        bbox_head: the student's box head (softmax classification).
        cls_score (Tensor): (N, num_classes + 1) the student's logits.
        labels (Tensor): (N,) sampled labels; ``num_classes`` marks background.
        label_weights (Tensor): (N,) the sampler's weights.
        negative_targets (Tensor): (number of background samples, num_classes + 1) the
            teacher's distributions, in the order the background samples appear in
            ``labels``.

    Returns:
        dict: ``loss_cls`` and ``acc``.
    """
    num_classes = bbox_head.num_classes
    negative = labels == num_classes
    if int(negative.sum()) != len(negative_targets):
        raise ValueError(f'{int(negative.sum())} background samples but '
                         f'{len(negative_targets)} teacher distributions')
    if cls_score.numel() == 0:
        return dict(loss_cls=cls_score.sum())
    targets = torch.nn.functional.one_hot(labels, num_classes + 1).to(cls_score.dtype)
    targets[negative] = negative_targets.detach().to(cls_score.dtype)
    per_sample = -(targets * cls_score.log_softmax(dim=-1)).sum(dim=-1)
    avg_factor = max(float((label_weights > 0).sum()), 1.0)
    loss = (per_sample * label_weights).sum() / avg_factor
    return dict(loss_cls=loss * bbox_head.loss_cls.loss_weight,
                acc=accuracy(cls_score, labels))


def positive_regression_loss(roi_head, feats: Sequence[Tensor],
                             sampling_results: List[SamplingResult], rcnn_train_cfg,
                             stage: Optional[int] = None) -> Tensor:
    """``loss_bbox`` of ``StandardRoIHead.loss`` (or of stage ``stage`` of a cascade) for
    these samples, computed on the positive samples alone.

    ``BBoxHead.loss`` averages the positives' regression loss over all samples
    (``avg_factor = number of samples``); negatives add nothing else. So only the positive
    RoIs go through RoIAlign and the box head.
    """
    bbox_head, forward = stage_parts(roi_head, stage)[2:]
    labels, _, targets, weights = bbox_head.get_targets(sampling_results, rcnn_train_cfg,
                                                        concat=True)
    num_samples = targets.size(0)
    positive = (labels >= 0) & (labels < bbox_head.num_classes)
    num_pos = int(positive.sum())
    if num_pos == 0:
        # mmdet returns bbox_pred[empty].sum(): a zero that depends on the box head
        return sum(p.sum() * 0 for p in bbox_head.parameters() if p.requires_grad)
    pos_rois = bbox2roi([res.pos_priors for res in sampling_results])
    if pos_rois.shape[0] != num_pos:
        raise RuntimeError(f'{pos_rois.shape[0]} positive RoIs but {num_pos} positive labels')
    # get_targets puts each image's positives first, so the positives' rows, in order,
    # line up with pos_rois
    bbox_pred = forward(feats, pos_rois)['bbox_pred']
    pos_labels, pos_targets, pos_weights = labels[positive], targets[positive], weights[positive]
    if bbox_head.reg_decoded_bbox:
        bbox_pred = get_box_tensor(bbox_head.bbox_coder.decode(pos_rois[:, 1:], bbox_pred))
    if bbox_head.reg_class_agnostic:
        pred = bbox_pred.view(num_pos, -1)
    else:
        pred = bbox_pred.view(num_pos, bbox_head.num_classes, -1)[
            torch.arange(num_pos, device=bbox_pred.device), pos_labels]
    return bbox_head.loss_bbox(pred, pos_targets, pos_weights, avg_factor=num_samples)
