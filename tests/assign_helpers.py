"""Watching a detector's assigner during a loss, and checking that it ignored the band."""
import torch


def spy_assigner(monkeypatch, assigner) -> list:
    """Record ``(priors, gt_instances_ignore, gt_inds)`` of every ``assigner.assign`` call."""
    calls = []
    real_assign = assigner.assign

    def spy(pred_instances, gt_instances, gt_instances_ignore=None, **kwargs):
        result = real_assign(pred_instances, gt_instances, gt_instances_ignore, **kwargs)
        calls.append((pred_instances.priors.clone(), gt_instances_ignore, result.gt_inds.clone()))
        return result

    monkeypatch.setattr(assigner, 'assign', spy)
    return calls


def iof(boxes, region):
    """Fraction of each box's area inside ``region`` (mmdet's ``iof`` w.r.t. the boxes)."""
    lt = torch.maximum(boxes[:, :2], region[:2])
    rb = torch.minimum(boxes[:, 2:], region[2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (boxes[:, 2:] - boxes[:, :2]).prod(-1)


def iou(boxes, box):
    area = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
    inter = iof(boxes, box) * area
    return inter / (area + (box[2:] - box[:2]).prod() - inter)


def assert_band_ignored(assigner, priors, gt_inds, ignored_box, pseudo_box):
    """Priors inside the ignored box (iof over ``ignore_iof_thr``) and away from the pseudo
    box are unassigned (-1); priors outside the ignored box are assigned (>= 0)."""
    in_band = ((iof(priors, ignored_box) > assigner.ignore_iof_thr) &
               (iou(priors, pseudo_box) < assigner.neg_iou_thr))
    assert in_band.sum() >= 3
    assert (gt_inds[in_band] == -1).all()
    outside = iof(priors, ignored_box) <= assigner.ignore_iof_thr
    assert outside.any() and (gt_inds[outside] >= 0).all()
