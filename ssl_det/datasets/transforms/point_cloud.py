"""Point-cloud augmentations: global geometric maps recorded in ``lidar_aug_matrix``, range
and box filters, and per-point noise.

Every geometric transform here builds one 4×4 matrix ``T`` and calls
:func:`apply_aug_matrix`, which moves ``points`` with
:func:`~ssl_det.structures.transform_points` and ``gt_bboxes_3d`` with
:func:`~ssl_det.structures.transform_boxes3d` (so a box and the points inside it move
together exactly) and records ``results['lidar_aug_matrix'] = T @ lidar_aug_matrix``, the map
from the raw scene to this view. ``weak_to_strong_matrix`` of two views' matrices then moves
the teacher's boxes onto the student's view.

Random draws go through NumPy's global RNG (as mmdet's transforms do), which mmengine seeds
per rank and dataloader worker from ``randomness.seed``, so runs repeat under a fixed seed.
Box filters drop every per-box array of :data:`BOX_KEYS` together and add the number dropped
to ``results['num_filtered_boxes']`` (summed over the filters of one pipeline run).
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from ssl_det.registry import TRANSFORMS
from ssl_det.structures import points_in_boxes, transform_boxes3d, transform_points

#: Per-box arrays that are filtered, pasted and packed together with ``gt_bboxes_3d``.
BOX_KEYS = ('gt_bboxes_3d', 'gt_labels_3d', 'gt_difficulty', 'gt_ignore_flags')


def get_aug_matrix(results: Dict) -> np.ndarray:
    """The view's 4×4 float64 ``lidar_aug_matrix`` (identity when no transform set it)."""
    matrix = results.get('lidar_aug_matrix')
    if matrix is None:
        return np.eye(4)
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"results['lidar_aug_matrix'] must be 4x4, got shape {matrix.shape} "
                         f"(frame {results.get('frame_id')})")
    return matrix


def apply_aug_matrix(results: Dict, matrix: np.ndarray) -> Dict:
    """Move ``points`` and ``gt_bboxes_3d`` by the 4×4 map ``matrix`` and left-multiply it
    onto ``results['lidar_aug_matrix']`` (created as identity if missing)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if 'points' in results:
        results['points'] = transform_points(results['points'], matrix)
    if 'gt_bboxes_3d' in results:
        boxes = np.asarray(results['gt_bboxes_3d'])
        results['gt_bboxes_3d'] = transform_boxes3d(boxes, matrix).astype(boxes.dtype, copy=False)
    results['lidar_aug_matrix'] = matrix @ get_aug_matrix(results)
    return results


def filter_boxes(results: Dict, keep: np.ndarray) -> int:
    """Keep rows ``keep`` (bool mask) of every per-box array in :data:`BOX_KEYS`; add the
    number dropped to ``results['num_filtered_boxes']`` and return it."""
    keep = np.asarray(keep, dtype=bool)
    for key in BOX_KEYS:
        if key not in results:
            continue
        if len(results[key]) != len(keep):
            raise ValueError(
                f"results['{key}'] has {len(results[key])} rows but there are {len(keep)} "
                f"boxes (frame {results.get('frame_id')}); per-box arrays {BOX_KEYS} must be "
                'filtered together')
        results[key] = results[key][keep]
    dropped = int((~keep).sum())
    results['num_filtered_boxes'] = results.get('num_filtered_boxes', 0) + dropped
    return dropped


def _check_range(point_cloud_range: Sequence[float]) -> np.ndarray:
    pcr = np.asarray(point_cloud_range, dtype=np.float64).reshape(-1)
    if pcr.shape != (6, ) or not (pcr[:3] < pcr[3:]).all():
        raise ValueError('point_cloud_range must be [x_min, y_min, z_min, x_max, y_max, z_max] '
                         f'with min < max, got {list(point_cloud_range)}')
    return pcr


def _check_prob(**probs: float) -> None:
    bad = {k: v for k, v in probs.items() if not 0 <= v <= 1}
    if bad:
        raise ValueError(f'probabilities must lie in [0, 1], got {bad}')


# ----------------------------------------------------------------------------- geometric
@TRANSFORMS.register_module()
class RandomFlip3D(BaseTransform):
    """Mirror the scene; each flip is named by the coordinate it negates.

    - ``flip_y`` (probability ``flip_y_ratio``): ``y -> -y``, a mirror across the x axis
      (left and right swap). This is mmdet3d's ``flip_ratio_bev_horizontal`` and the one to use
      for a forward-only range such as KITTI's ``x in [0, 70]``.
    - ``flip_x`` (probability ``flip_x_ratio``): ``x -> -x``, a mirror across the y axis
      (front and back swap); only for 360° scenes, since it moves a forward-only scene out of
      its range.

    Yaw follows from the matrix (``transform_boxes3d`` maps the heading vector): ``y -> -y``
    gives ``yaw -> -yaw`` and ``x -> -x`` gives ``yaw -> pi - yaw``. Records
    ``results['flip_x']`` and ``results['flip_y']`` (bools).

    Args:
        flip_y_ratio (float): probability of ``y -> -y``. Defaults to 0.5.
        flip_x_ratio (float): probability of ``x -> -x``. Defaults to 0.0.
    """

    def __init__(self, flip_y_ratio: float = 0.5, flip_x_ratio: float = 0.0) -> None:
        _check_prob(flip_y_ratio=flip_y_ratio, flip_x_ratio=flip_x_ratio)
        self.flip_y_ratio = flip_y_ratio
        self.flip_x_ratio = flip_x_ratio

    @cache_randomness
    def _draw(self) -> Tuple[bool, bool]:
        flip_x = bool(np.random.rand() < self.flip_x_ratio)
        return flip_x, bool(np.random.rand() < self.flip_y_ratio)

    def transform(self, results: Dict) -> Dict:
        flip_x, flip_y = self._draw()
        results['flip_x'], results['flip_y'] = flip_x, flip_y
        matrix = np.diag([-1.0 if flip_x else 1.0, -1.0 if flip_y else 1.0, 1.0, 1.0])
        return apply_aug_matrix(results, matrix)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(flip_y_ratio={self.flip_y_ratio}, '
                f'flip_x_ratio={self.flip_x_ratio})')


@TRANSFORMS.register_module()
class GlobalRotScaleTrans(BaseTransform):
    """Rotate the scene about the z axis, scale it uniformly and translate it: one map
    ``p' = s * Rz(angle) @ p + t`` (rotation first, then scale, then translation).

    A positive angle turns the scene counter-clockwise seen from above (box yaws grow by
    ``angle``); the scale multiplies every coordinate and every box size (z and dz too).

    Args:
        rot_range (float | Sequence[float]): (min, max) angle in radians, drawn uniformly; a
            number ``r`` means ``(-r, r)``. Defaults to ``(-pi/4, pi/4)``.
        scale_range (Sequence[float]): (min, max) scale, drawn uniformly, > 0.
            Defaults to ``(0.95, 1.05)``.
        translation_std (float | Sequence[float]): std in metres of the Gaussian translation
            along x, y, z (a number applies to all three). Defaults to ``(0, 0, 0)``.
    """

    def __init__(self,
                 rot_range: Union[float, Sequence[float]] = (-np.pi / 4, np.pi / 4),
                 scale_range: Sequence[float] = (0.95, 1.05),
                 translation_std: Union[float, Sequence[float]] = (0, 0, 0)) -> None:
        if np.isscalar(rot_range):
            rot_range = (-abs(float(rot_range)), abs(float(rot_range)))
        if len(rot_range) != 2 or rot_range[0] > rot_range[1]:
            raise ValueError(f'rot_range must be (min, max) radians, got {rot_range!r}')
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f'scale_range must be (min, max) with 0 < min <= max, got '
                             f'{scale_range!r}')
        std = np.broadcast_to(np.asarray(translation_std, dtype=np.float64), (3, )).copy()
        if (std < 0).any():
            raise ValueError(f'translation_std must be >= 0, got {translation_std!r}')
        self.rot_range = (float(rot_range[0]), float(rot_range[1]))
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.translation_std = tuple(float(v) for v in std)

    @cache_randomness
    def _draw(self) -> Tuple[float, float, np.ndarray]:
        angle = np.random.uniform(*self.rot_range)
        scale = np.random.uniform(*self.scale_range)
        shift = np.random.normal(0.0, 1.0, size=3) * np.asarray(self.translation_std)
        return float(angle), float(scale), shift

    @staticmethod
    def matrix(angle: float, scale: float, shift: Sequence[float]) -> np.ndarray:
        """The 4×4 map ``p' = scale * Rz(angle) @ p + shift``."""
        c, s = np.cos(angle), np.sin(angle)
        mat = np.eye(4)
        mat[:3, :3] = scale * np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        mat[:3, 3] = shift
        return mat

    def transform(self, results: Dict) -> Dict:
        angle, scale, shift = self._draw()
        return apply_aug_matrix(results, self.matrix(angle, scale, shift))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(rot_range={self.rot_range}, '
                f'scale_range={self.scale_range}, translation_std={self.translation_std})')


# ----------------------------------------------------------------------------- filters
@TRANSFORMS.register_module()
class PointsRangeFilter(BaseTransform):
    """Keep the points with ``min <= xyz < max`` (half-open, as voxel grids are); boxes are
    untouched (use :class:`ObjectRangeFilter`). Records ``results['num_filtered_points']``.

    Args:
        point_cloud_range (Sequence[float]): ``[x_min, y_min, z_min, x_max, y_max, z_max]`` in
            metres, in the current view's frame.
    """

    def __init__(self, point_cloud_range: Sequence[float]) -> None:
        self.point_cloud_range = _check_range(point_cloud_range)

    def transform(self, results: Dict) -> Dict:
        xyz = results['points'][:, :3]
        pcr = self.point_cloud_range
        keep = ((xyz >= pcr[:3]) & (xyz < pcr[3:])).all(axis=1)
        results['points'] = results['points'][keep]
        results['num_filtered_points'] = (results.get('num_filtered_points', 0)
                                          + int((~keep).sum()))
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(point_cloud_range={self.point_cloud_range.tolist()})'


@TRANSFORMS.register_module()
class ObjectRangeFilter(BaseTransform):
    """Drop the boxes whose BEV centre ``(x, y)`` lies outside ``[min, max)`` of the range
    (z is not checked), with all their per-box arrays (:data:`BOX_KEYS`); counted in
    ``results['num_filtered_boxes']``.

    Args:
        point_cloud_range (Sequence[float]): ``[x_min, y_min, z_min, x_max, y_max, z_max]``.
    """

    def __init__(self, point_cloud_range: Sequence[float]) -> None:
        self.point_cloud_range = _check_range(point_cloud_range)

    def transform(self, results: Dict) -> Dict:
        if 'gt_bboxes_3d' not in results:
            return results
        xy = np.asarray(results['gt_bboxes_3d'])[:, :2]
        pcr = self.point_cloud_range
        keep = ((xy >= pcr[:2]) & (xy < pcr[3:5])).all(axis=1)
        filter_boxes(results, keep)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(point_cloud_range={self.point_cloud_range.tolist()})'


@TRANSFORMS.register_module()
class ObjectNameFilter(BaseTransform):
    """Keep the boxes whose label is one of ``classes``' indices, ``0 <= label < len(classes)``,
    dropping label -1 ("not one of our classes", as mmdet3d's infos mark DontCare) and labels
    beyond the list; counted in ``results['num_filtered_boxes']``. ssl_det's
    ``PointCloudDataset`` already drops or refuses other names when loading, so this guards
    labels that come from elsewhere (converted infos, pasted or pseudo boxes).

    Args:
        classes (Sequence[str]): the dataset's class names, in label order.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        if isinstance(classes, str) or not len(classes):
            raise ValueError(f'classes must be a non-empty list of names, got {classes!r}')
        self.classes = tuple(classes)

    def transform(self, results: Dict) -> Dict:
        if 'gt_labels_3d' not in results:
            return results
        labels = np.asarray(results['gt_labels_3d'])
        filter_boxes(results, (labels >= 0) & (labels < len(self.classes)))
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(classes={self.classes})'


@TRANSFORMS.register_module()
class ObjectMinPointsFilter(BaseTransform):
    """Drop the boxes holding fewer than ``min_points`` points (faces included), with their
    per-box arrays; counted in ``results['num_filtered_boxes']``. Place it after the point
    filters and dropout so that it counts the points the model will see.

    Args:
        min_points (int): least number of points inside a kept box. Defaults to 1.
    """

    def __init__(self, min_points: int = 1) -> None:
        if int(min_points) != min_points or min_points < 0:
            raise ValueError(f'min_points must be an int >= 0, got {min_points!r}')
        self.min_points = int(min_points)

    def transform(self, results: Dict) -> Dict:
        if 'gt_bboxes_3d' not in results or not len(results['gt_bboxes_3d']):
            return results
        counts = points_in_boxes(results['points'], results['gt_bboxes_3d']).sum(axis=0)
        filter_boxes(results, counts >= self.min_points)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(min_points={self.min_points})'


# ----------------------------------------------------------------------------- point noise
@TRANSFORMS.register_module()
class PointDropout(BaseTransform):
    """With probability ``prob``, drop ``round(drop_ratio * N)`` points chosen uniformly
    (the others keep their order). Boxes are untouched; follow with
    :class:`ObjectMinPointsFilter` if empty boxes must go. Records
    ``results['num_dropped_points']``.

    Args:
        drop_ratio (float): fraction of the points to drop, in [0, 1). Defaults to 0.1.
        prob (float): probability of dropping at all. Defaults to 1.0.
    """

    def __init__(self, drop_ratio: float = 0.1, prob: float = 1.0) -> None:
        if not 0 <= drop_ratio < 1:
            raise ValueError(f'drop_ratio must lie in [0, 1), got {drop_ratio}')
        _check_prob(prob=prob)
        self.drop_ratio = float(drop_ratio)
        self.prob = float(prob)

    @cache_randomness
    def _draw(self, num_points: int) -> Optional[np.ndarray]:
        if np.random.rand() >= self.prob:
            return None
        num_drop = int(round(self.drop_ratio * num_points))
        return np.random.choice(num_points, num_drop, replace=False)

    def transform(self, results: Dict) -> Dict:
        num_points = len(results['points'])
        drop = self._draw(num_points)
        if drop is None:
            results['num_dropped_points'] = 0
            return results
        keep = np.ones(num_points, dtype=bool)
        keep[drop] = False
        results['points'] = results['points'][keep]
        results['num_dropped_points'] = len(drop)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(drop_ratio={self.drop_ratio}, prob={self.prob})'


@TRANSFORMS.register_module()
class PointJitter(BaseTransform):
    """Add Gaussian noise, clipped to ``[-clip, clip]`` per axis, to each point's xyz (other
    columns are kept).

    The ``lidar_aug_matrix`` is left unchanged and the boxes are not moved: the noise is not a
    map of the scene but a per-point perturbation of at most ``clip`` metres per axis, so the
    boxes stay where the objects are and a point can only cross a box face by ``clip``.

    Args:
        std (float): noise std in metres. Defaults to 0.01.
        clip (float): largest displacement per axis in metres. Defaults to 0.05.
    """

    def __init__(self, std: float = 0.01, clip: float = 0.05) -> None:
        if std < 0 or clip < 0:
            raise ValueError(f'std and clip must be >= 0, got std={std}, clip={clip}')
        self.std = float(std)
        self.clip = float(clip)

    @cache_randomness
    def _draw(self, num_points: int) -> np.ndarray:
        return np.clip(np.random.normal(0.0, self.std, size=(num_points, 3)), -self.clip, self.clip)

    def transform(self, results: Dict) -> Dict:
        points = np.array(results['points'], copy=True)
        points[:, :3] += self._draw(len(points)).astype(points.dtype)
        results['points'] = points
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(std={self.std}, clip={self.clip})'


@TRANSFORMS.register_module()
class PointShuffle(BaseTransform):
    """Permute the points' order (a model that subsamples by index sees different points)."""

    @cache_randomness
    def _draw(self, num_points: int) -> np.ndarray:
        return np.random.permutation(num_points)

    def transform(self, results: Dict) -> Dict:
        results['points'] = results['points'][self._draw(len(results['points']))]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'
