"""HSSDA's shuffle augmentation for the student's view of an unlabeled scene."""
from typing import Dict, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform

from ssl_det.registry import TRANSFORMS
from ssl_det.structures.bev_shuffle import make_shuffle, shuffle_boxes, shuffle_points


@TRANSFORMS.register_module()
class BEVPatchShuffle(BaseTransform):
    """Cut the BEV range into ``grid = (nx, ny)`` patches and permute them (points move
    with their patch by a translation; see :mod:`ssl_det.structures.bev_shuffle`).

    Place it after every geometric transform (it is not a 4×4 map: it is recorded on its
    own, as ``results['bev_shuffle'] = dict(range, grid, perm)``, and the teacher's pseudo
    boxes are moved through ``lidar_aug_matrix`` first, then through this record).
    Ground-truth boxes lying in one patch move with it; a box cut by a patch border cannot
    move as one box, so it stays where it was with ``gt_ignore_flags`` set (its region is
    then neither foreground nor background). With ``prob < 1`` the identity permutation is
    recorded when the shuffle is skipped.

    With ``mode='unshuffle_features'`` (what HSSDA's code does) only the points move: boxes
    stay in the unshuffled frame, none is cut, and the detector (``PillarDetector``) moves
    its BEV feature maps back right after the backbone, so the neck and head see the scene
    in place. The patch borders must then fall on whole cells of every backbone output.

    Args:
        point_cloud_range (list[float]): (x_min, y_min, z_min, x_max, y_max, z_max).
        grid (tuple[int, int]): patches along x and y. Defaults to (2, 2) (HSSDA).
        prob (float): probability of shuffling. Defaults to 1.0.
        mode (str): ``'move_boxes'`` or ``'unshuffle_features'``. Defaults to
            ``'move_boxes'``.
    """

    def __init__(self, point_cloud_range: Sequence[float], grid: Tuple[int, int] = (2, 2),
                 prob: float = 1.0, mode: str = 'move_boxes'):
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        self.grid = (int(grid[0]), int(grid[1]))
        make_shuffle(self.point_cloud_range, self.grid, range(self.grid[0] * self.grid[1]),
                     mode)
        self.prob = float(prob)
        self.mode = mode

    def transform(self, results: Dict) -> Dict:
        n = self.grid[0] * self.grid[1]
        perm = np.random.permutation(n) if np.random.rand() < self.prob else np.arange(n)
        info = make_shuffle(self.point_cloud_range, self.grid, perm, self.mode)
        results['points'] = shuffle_points(results['points'], info)
        boxes = results.get('gt_bboxes_3d')
        if self.mode == 'move_boxes' and boxes is not None and len(boxes):
            moved, whole = shuffle_boxes(np.asarray(boxes), info)
            results['gt_bboxes_3d'] = moved.astype(np.asarray(boxes).dtype)
            flags = np.asarray(results.get('gt_ignore_flags', np.zeros(len(boxes), bool)))
            results['gt_ignore_flags'] = flags | ~whole
        results['bev_shuffle'] = info
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(point_cloud_range={self.point_cloud_range}, '
                f'grid={self.grid}, prob={self.prob}, mode={self.mode!r})')
