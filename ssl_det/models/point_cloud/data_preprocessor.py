"""Moving point-cloud batches to the device in the shape the detectors take."""
from typing import Mapping, Sequence

from mmengine.model import BaseDataPreprocessor

from ssl_det.registry import MODELS


@MODELS.register_module()
class PointCloudDataPreprocessor(BaseDataPreprocessor):
    """Cast a batch to the model's device and give ``inputs`` as ``dict(points=[Tensor (N_i,
    C), ...])`` (clouds differ in size: a list, not a stacked tensor).

    Accepts the collated ``dict(points=[...])`` and, inside ``MultiBranchDataPreprocessor``,
    a list of per-sample ``dict(points=T)`` (see :func:`ssl_det.datasets.point_cloud_collate`).
    Voxelization happens in the detector (``PillarVoxelizer``), so teacher and student can
    voxelize different views of one scene.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data['inputs']
        if isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)):
            if inputs and not all(isinstance(i, Mapping) and 'points' in i for i in inputs):
                raise TypeError('PointCloudDataPreprocessor: inputs must be dict(points=[...]) '
                                'or a list of dict(points=Tensor)')
            inputs = dict(points=[i['points'] for i in inputs])
        elif not (isinstance(inputs, Mapping) and 'points' in inputs):
            raise TypeError(f'PointCloudDataPreprocessor: inputs must hold points, got '
                            f'{type(inputs).__name__}')
        return dict(inputs=dict(inputs), data_samples=data.get('data_samples'))
