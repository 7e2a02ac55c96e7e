"""mmdet's MaxIoUAssigner, ignoring the ignored boxes in images without ground truth too."""
from typing import Optional

from mmdet.models.task_modules import AssignResult, MaxIoUAssigner
from mmengine.structures import InstanceData

from ssl_det.registry import TASK_UTILS


@TASK_UTILS.register_module()
class IgnoreAwareMaxIoUAssigner(MaxIoUAssigner):
    """``MaxIoUAssigner`` whose ``ignore_iof_thr`` also holds when an image has no ground
    truth.

    mmdet's assigner marks priors inside ignored boxes only in images with at least one
    ground-truth box; in an image without one it makes every prior background. On unlabeled
    images that is common (the teacher found only ambiguous objects): the ambiguous band would
    be learned as background exactly where the teacher was unsure. Here those priors are left
    unassigned (-1) as they are in images with ground truth. Everything else is mmdet's.
    """

    def assign(self, pred_instances: InstanceData, gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None, **kwargs) -> AssignResult:
        result = super().assign(pred_instances, gt_instances, gt_instances_ignore, **kwargs)
        if (len(gt_instances) or gt_instances_ignore is None or not len(gt_instances_ignore)
                or self.ignore_iof_thr <= 0 or not len(pred_instances)):
            return result
        priors = pred_instances.priors
        ignore = gt_instances_ignore.bboxes.to(priors.device)
        if self.ignore_wrt_candidates:
            iof = self.iou_calculator(priors, ignore, mode='iof').max(dim=1).values
        else:
            iof = self.iou_calculator(ignore, priors, mode='iof').max(dim=0).values
        inside = iof > self.ignore_iof_thr
        result.gt_inds[inside.to(result.gt_inds.device)] = -1
        return result
