"""The data element that carries one point-cloud frame's annotations and predictions."""
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData


class PointCloudDataSample(DetDataSample):
    """A :class:`~mmdet.structures.DetDataSample` with 3D instance fields.

    - ``gt_instances_3d``: ``bboxes_3d`` (M, 7) float Tensor in ssl_det's box convention
      (:mod:`ssl_det.structures.box3d`), ``labels_3d`` (M,) long, optional ``difficulty``.
    - ``pred_instances_3d``: ``bboxes_3d``, ``scores_3d``, ``labels_3d``.
    - ``ignored_instances_3d``: boxes whose region is neither foreground nor background.

    Metainfo carries ``frame_id``, ``lidar_path`` and ``lidar_aug_matrix`` (the 4×4 map from
    the raw scene to this view; see :func:`ssl_det.structures.transform_boxes3d`).
    """

    @property
    def gt_instances_3d(self) -> InstanceData:
        return self._gt_instances_3d

    @gt_instances_3d.setter
    def gt_instances_3d(self, value: InstanceData) -> None:
        self.set_field(value, '_gt_instances_3d', dtype=InstanceData)

    @gt_instances_3d.deleter
    def gt_instances_3d(self) -> None:
        del self._gt_instances_3d

    @property
    def pred_instances_3d(self) -> InstanceData:
        return self._pred_instances_3d

    @pred_instances_3d.setter
    def pred_instances_3d(self, value: InstanceData) -> None:
        self.set_field(value, '_pred_instances_3d', dtype=InstanceData)

    @pred_instances_3d.deleter
    def pred_instances_3d(self) -> None:
        del self._pred_instances_3d

    @property
    def ignored_instances_3d(self) -> InstanceData:
        return self._ignored_instances_3d

    @ignored_instances_3d.setter
    def ignored_instances_3d(self, value: InstanceData) -> None:
        self.set_field(value, '_ignored_instances_3d', dtype=InstanceData)

    @ignored_instances_3d.deleter
    def ignored_instances_3d(self) -> None:
        del self._ignored_instances_3d
