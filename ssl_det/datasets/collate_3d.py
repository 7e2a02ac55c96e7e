"""Collating point-cloud samples, including MultiBranch samples whose absent branches are
None (a labeled scene has no unlabeled views and the other way round)."""
from typing import Any, Mapping, Sequence

from mmengine.dataset import pseudo_collate
from mmengine.registry import FUNCTIONS


@FUNCTIONS.register_module()
def point_cloud_collate(data_batch: Sequence[Any]) -> Any:
    """mmengine's ``pseudo_collate`` (lists, no stacking: point clouds differ in size), except
    that a field whose samples are dicts mixed with None stays a list of them.

    ``pseudo_collate`` recurses into the first sample's dict and fails on the None of a
    branch another sample lacks; here ``inputs['sup']`` becomes ``[{'points': T}, None, ...]``
    and ``MultiBranchDataPreprocessor`` drops the None entries, then
    :class:`~ssl_det.models.point_cloud.PointCloudDataPreprocessor` gathers the points.
    """
    present = [d for d in data_batch if d is not None]
    if present and isinstance(present[0], Mapping):
        if len(present) < len(data_batch):
            return list(data_batch)
        return {key: point_cloud_collate([d[key] for d in data_batch]) for key in present[0]}
    return pseudo_collate(list(data_batch))
