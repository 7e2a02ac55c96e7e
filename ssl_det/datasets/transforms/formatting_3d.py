"""Pack a point-cloud pipeline's results into the model's inputs and a PointCloudDataSample."""
from typing import Dict, Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import InstanceData

from ssl_det.registry import TRANSFORMS
from ssl_det.structures import PointCloudDataSample

#: results key -> field of ``gt_instances_3d`` / ``ignored_instances_3d`` and its dtype.
_INSTANCE_FIELDS = {
    'gt_bboxes_3d': ('bboxes_3d', torch.float32),
    'gt_labels_3d': ('labels_3d', torch.long),
    'gt_difficulty': ('difficulty', torch.long),
}


@TRANSFORMS.register_module()
class PackPointCloudInputs(BaseTransform):
    """Pack ``results`` into ``{'inputs': {'points': float32 Tensor (N, C)},
    'data_samples': PointCloudDataSample}``.

    ``gt_instances_3d`` gets ``bboxes_3d`` (M, 7) float32, ``labels_3d`` (M,) long and, when
    ``results`` has ``gt_difficulty``, ``difficulty`` (M,) long. When ``results`` has
    ``gt_ignore_flags``, the flagged boxes go to ``ignored_instances_3d`` (same fields) and
    not to ``gt_instances_3d``; ``ignored_instances_3d`` is always set (empty otherwise), as
    mmdet's ``PackDetInputs`` does. The metainfo holds each of ``meta_keys`` present in
    ``results``, plus ``num_points`` (the packed points' count) when it is listed.

    Args:
        keys (Sequence[str]): results keys to pack, from ``'points'``, ``'gt_bboxes_3d'``,
            ``'gt_labels_3d'`` and ``'gt_difficulty'`` (``gt_difficulty`` is packed whenever
            present). Defaults to ``('points', 'gt_bboxes_3d', 'gt_labels_3d')``.
        meta_keys (Sequence[str]): results keys copied into the metainfo. Defaults to
            ``('frame_id', 'lidar_path', 'sample_idx', 'lidar_aug_matrix', 'num_points',
            'flip_x', 'flip_y')``.
    """

    def __init__(self,
                 keys: Sequence[str] = ('points', 'gt_bboxes_3d', 'gt_labels_3d'),
                 meta_keys: Sequence[str] = ('frame_id', 'lidar_path', 'sample_idx',
                                             'lidar_aug_matrix', 'num_points', 'flip_x',
                                             'flip_y')) -> None:
        unknown = set(keys) - {'points'} - set(_INSTANCE_FIELDS)
        if unknown:
            raise ValueError(f'PackPointCloudInputs cannot pack {sorted(unknown)}; keys are '
                             f"'points' and {list(_INSTANCE_FIELDS)} (others go in meta_keys)")
        self.keys = tuple(keys)
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: Dict) -> Dict:
        packed = {}
        if 'points' in self.keys:
            if 'points' not in results:
                raise KeyError(f"PackPointCloudInputs: no 'points' in results of frame "
                               f"{results.get('frame_id')}; load them first (LoadPointsFromFile)")
            points = np.ascontiguousarray(results['points'], dtype=np.float32)
            packed['inputs'] = {'points': torch.from_numpy(points)}

        ignore = None
        if 'gt_ignore_flags' in results:
            ignore = np.asarray(results['gt_ignore_flags'], dtype=bool)
        gt, ignored = InstanceData(), InstanceData()
        for key, (field, dtype) in _INSTANCE_FIELDS.items():
            if key not in results or (key not in self.keys and key != 'gt_difficulty'):
                continue
            value = torch.as_tensor(np.asarray(results[key])).to(dtype)
            if key == 'gt_bboxes_3d':
                value = value.reshape(-1, value.shape[-1] if value.numel() else 7)
            if ignore is not None:
                if len(ignore) != len(value):
                    raise ValueError(f"results['{key}'] has {len(value)} rows, gt_ignore_flags "
                                     f"{len(ignore)} (frame {results.get('frame_id')})")
                mask = torch.from_numpy(ignore)
                gt[field], ignored[field] = value[~mask], value[mask]
            else:
                gt[field] = value
                ignored[field] = value[:0]

        data_sample = PointCloudDataSample()
        data_sample.gt_instances_3d = gt
        data_sample.ignored_instances_3d = ignored
        meta = {key: results[key] for key in self.meta_keys if key in results}
        if 'num_points' in self.meta_keys and 'points' in results:
            meta['num_points'] = len(results['points'])
        data_sample.set_metainfo(meta)
        packed['data_samples'] = data_sample
        return packed

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(keys={self.keys}, meta_keys={self.meta_keys})'
