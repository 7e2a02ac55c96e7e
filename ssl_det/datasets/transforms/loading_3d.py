"""Reading a frame's points into the pipeline (the 3D counterpart of ``LoadImageFromFile``)."""
from typing import Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform

from ssl_det.registry import TRANSFORMS
from ..point_cloud_io import PointCloudDataError, load_points
from ..unreadable import UnreadableDataError


class UnreadablePointCloud(UnreadableDataError, PointCloudDataError):
    """A point file that is missing or whose content is not a valid point cloud."""


@TRANSFORMS.register_module()
class LoadPointsFromFile(BaseTransform):
    """Read ``results['lidar_path']`` into ``results['points']`` (float32 (N, C), columns
    x, y, z, intensity, ... in the LiDAR frame, metres) and start the augmentation record
    ``results['lidar_aug_matrix'] = np.eye(4)`` (float64; every geometric transform after
    this left-multiplies its own 4x4 map).

    ``.bin`` / ``.npy`` / ``.pcd`` / ``.ply`` files are read by
    :func:`ssl_det.datasets.point_cloud_io.load_points`, whose errors name the file and frame
    (wrong ``point_dim``, NaN/Inf, missing file), raised as ``UnreadablePointCloud`` (an
    ``UnreadableDataError``: ``PointCloudDataset`` skips such frames in an unlabeled pool).
    ``results['num_point_features']`` is set to the number of columns kept.

    Args:
        point_dim (int, optional): Values per point in the file. Default:
            ``results['num_point_features']`` (set by ``PointCloudDataset``).
        use_dims (Sequence[int], optional): Columns to keep, e.g. ``[0, 1, 2, 3]`` to drop
            extra channels; must start with 0, 1, 2 (x, y, z). Default: all columns.
        check_finite (bool): Raise on NaN/Inf values. Defaults to True.
    """

    def __init__(self, point_dim: Optional[int] = None,
                 use_dims: Optional[Sequence[int]] = None, check_finite: bool = True) -> None:
        if point_dim is not None and point_dim < 3:
            raise ValueError(f'point_dim must be >= 3 (x, y, z first), got {point_dim}')
        if use_dims is not None:
            use_dims = [int(d) for d in use_dims]
            if use_dims[:3] != [0, 1, 2]:
                raise ValueError(f'use_dims must start with 0, 1, 2 (x, y, z), got {use_dims}')
            if point_dim is not None and max(use_dims) >= point_dim:
                raise ValueError(f'use_dims {use_dims} reaches past point_dim={point_dim}')
        self.point_dim = point_dim
        self.use_dims = use_dims
        self.check_finite = check_finite

    def transform(self, results: dict) -> dict:
        path = results['lidar_path']
        frame_id = results.get('frame_id')
        dim = self.point_dim or results.get('num_point_features')
        if dim is None:
            raise PointCloudDataError(
                f'{path} (frame {frame_id}): the number of values per point is unknown; set '
                'LoadPointsFromFile(point_dim=...) or num_point_features in the info file')
        try:
            points = load_points(path, int(dim), frame_id=frame_id,
                                 check_finite=self.check_finite)
        except PointCloudDataError as exc:  # missing, cut short, NaN: the file is at fault
            raise UnreadablePointCloud(path, str(exc)) from exc
        if self.use_dims is not None:
            if max(self.use_dims) >= points.shape[1]:
                raise PointCloudDataError(
                    f'{path} (frame {frame_id}): use_dims {self.use_dims} needs '
                    f'{max(self.use_dims) + 1} columns, the file has {points.shape[1]}')
            points = points[:, self.use_dims]
        results['points'] = np.ascontiguousarray(points, dtype=np.float32)
        results['num_point_features'] = int(points.shape[1])
        results['lidar_aug_matrix'] = np.eye(4)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(point_dim={self.point_dim}, '
                f'use_dims={self.use_dims}, check_finite={self.check_finite})')
