"""A bank of the teacher's confident objects on unlabeled scenes, pasted into labeled scenes
(PseudoAugment's "pseudo frames", Leng et al., ECCV 2022; GT sampling with pseudo labels).

Each admitted object is a box and the points inside it, cut from the teacher's weak view and
stored in its scene's *raw* frame (the weak view's ``lidar_aug_matrix`` undone), so that it
keeps its distance and bearing from the sensor. Pasting maps it through the labeled scene's
own augmentation matrix: the object lands where it was in its own scene, seen the way the
labeled scene is seen (flipped, rotated, scaled alike). A pasted object is skipped when its
box leaves the point-cloud range or touches (BEV overlap > 0) a box the scene already has;
otherwise the scene's points inside its box are replaced by the object's points, as mmdet3d's
``ObjectSample`` does with ground-truth objects.
"""
from collections import deque
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ssl_det.ops import overlaps_bev
from ssl_det.structures import points_in_boxes, transform_boxes3d, transform_points


def check_num_paste(num_paste: Union[Sequence[int], str]) -> Union[Sequence[int], str]:
    """``num_paste`` as given: counts, or ``'fill'`` (any other string is refused)."""
    if isinstance(num_paste, str) and num_paste != 'fill':
        raise ValueError(f"num_paste must be counts or 'fill', got {num_paste!r}")
    return num_paste


class ObjectBank:
    """Per-class first-in first-out stores of (box, points) in raw scene frames.

    Args:
        num_classes (int): number of classes.
        num_paste (Sequence[int]): objects of each class pasted into each labeled scene
            (fewer while the class's store holds fewer; 0 never pastes that class).
        point_cloud_range (Sequence[float]): (x_min, y_min, z_min, x_max, y_max, z_max): a
            pasted box's centre must lie inside it.
        min_score (float): an object is admitted when the teacher's score reaches both this
            and its class's high threshold (the caller passes the high tier). Default 0.7.
        capacity (int): objects kept per class (the oldest leave first). Default 256.
        min_points (int): objects with fewer points inside their box are not admitted.
        margin (float): the box grown by this much (metres) when cutting an object's points
            and when clearing the labeled scene's points under it. Default 0.1.
    """

    def __init__(self, num_classes: int, num_paste: Sequence[int],
                 point_cloud_range: Sequence[float], min_score: float = 0.7,
                 capacity: int = 256, min_points: int = 5, margin: float = 0.1) -> None:
        if len(num_paste) != num_classes or any(int(n) < 0 for n in num_paste):
            raise ValueError(f'num_paste needs {num_classes} counts >= 0, got {list(num_paste)}')
        if len(point_cloud_range) != 6:
            raise ValueError(f'point_cloud_range needs 6 values, got {list(point_cloud_range)}')
        if capacity < 1 or min_points < 1 or margin < 0:
            raise ValueError(f'capacity and min_points must be >= 1 and margin >= 0, got '
                             f'{capacity}, {min_points}, {margin}')
        self.num_classes = int(num_classes)
        self.num_paste = [int(n) for n in num_paste]
        self.range = np.asarray(point_cloud_range, dtype=np.float64)
        self.min_score = float(min_score)
        self.capacity = int(capacity)
        self.min_points = int(min_points)
        self.margin = float(margin)
        self.stores: List[deque] = [deque(maxlen=self.capacity) for _ in range(num_classes)]

    @classmethod
    def from_database(cls, db_sampler: dict, num_paste: Union[Sequence[int], str],
                      point_cloud_range: Sequence[float], margin: float = 0.1) -> 'ObjectBank':
        """A bank of the *labeled* objects of a GT database (``db_sampler``: an
        ``ObjectSample`` config, its ``db_info_file``, ``classes`` and ``min_points``; its
        ``sample_groups`` name the classes read): every object the sampler can draw, each
        class's store as large as the class's objects, none ever evicted. ``num_paste='fill'``
        takes the sampler's targets (``sample_groups``, 0 for a class it does not name) as
        each class's count: a caller passes ``fill_counts(present)`` to ``paste``."""
        from ssl_det.registry import TRANSFORMS
        sampler = TRANSFORMS.build(db_sampler)
        if check_num_paste(num_paste) == 'fill':
            num_paste = [int(sampler.sample_groups.get(c, 0)) for c in sampler.classes]
        objects = sampler.objects()
        if not objects:
            raise ValueError(f'{sampler.db_info_file} holds no object to paste (classes '
                             f'{list(sampler.sample_groups)}, min_points {sampler.min_points})')
        counts = np.bincount([label for label, _, _ in objects],
                             minlength=len(sampler.classes))
        bank = cls(len(sampler.classes), num_paste, point_cloud_range, min_score=0.0,
                   capacity=int(counts.max()), min_points=1, margin=margin)
        for label, box, points in objects:
            bank.stores[label].append((torch.from_numpy(box).float(),
                                       torch.from_numpy(np.ascontiguousarray(points))))
        return bank

    def fill_counts(self, labels: Tensor) -> List[int]:
        """Objects of each class to paste into a scene that holds boxes of ``labels``, so
        that it reaches ``num_paste`` of each (mmdet3d's ``ObjectSample`` rule: the target
        less the boxes present, never below 0)."""
        present = np.bincount(labels.detach().long().cpu().numpy().reshape(-1),
                              minlength=self.num_classes)
        return [max(int(n) - int(p), 0) for n, p in zip(self.num_paste, present)]

    def __len__(self) -> int:
        return sum(len(s) for s in self.stores)

    def sizes(self) -> List[int]:
        return [len(s) for s in self.stores]

    @torch.no_grad()
    def add(self, points: Tensor, boxes: Tensor, labels: Tensor, scores: Tensor,
            view_matrix) -> int:
        """Admit the objects of one weak view (``boxes`` in that view's frame, already the
        high tier) whose score reaches ``min_score`` and whose box holds ``min_points``
        points. Returns the number admitted."""
        keep = scores >= self.min_score
        if not bool(keep.any()):
            return 0
        boxes, labels = boxes[keep], labels[keep]
        to_raw = np.linalg.inv(np.asarray(view_matrix, dtype=np.float64).reshape(4, 4))
        inside = points_in_boxes(points, boxes, margin=self.margin)
        raw_boxes = transform_boxes3d(boxes.detach().double().cpu(), to_raw)
        added = 0
        for k in range(len(boxes)):
            pts = points[inside[:, k]]
            if len(pts) < self.min_points:
                continue
            raw_pts = transform_points(pts.detach().cpu(), to_raw)
            self.stores[int(labels[k])].append((raw_boxes[k].float(), raw_pts))
            added += 1
        return added

    @torch.no_grad()
    def paste(self, points: Tensor, boxes: Tensor, view_matrix,
              avoid: Optional[Tensor] = None,
              rng: Optional[np.random.Generator] = None,
              counts: Optional[Sequence[int]] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """Paste objects into one labeled scene (``points`` and ``boxes`` in its view, whose
        map from the raw scene is ``view_matrix``). ``avoid``: more boxes (e.g. ignored
        ones) a pasted box must not touch. ``counts``: objects of each class for this scene
        (default ``num_paste``). Returns ``(points, pasted_boxes, pasted_labels)``: the
        scene's points with each pasted box's points replaced by its object's."""
        rng = rng if rng is not None else np.random.default_rng(np.random.randint(2**31))
        mat = np.asarray(view_matrix, dtype=np.float64).reshape(4, 4)
        device, dtype = points.device, points.dtype
        taken = [b.detach().double().cpu().reshape(-1, 7) for b in (boxes, avoid)
                 if b is not None and len(b)]
        taken = torch.cat(taken) if taken else torch.zeros(0, 7, dtype=torch.float64)
        new_boxes, new_labels, new_points = [], [], []
        counts = self.num_paste if counts is None else [int(n) for n in counts]
        if len(counts) != self.num_classes:
            raise ValueError(f'counts needs {self.num_classes} values, got {list(counts)}')
        for label, (store, count) in enumerate(zip(self.stores, counts)):
            count = min(count, len(store))
            if count == 0:
                continue
            for idx in rng.choice(len(store), size=count, replace=False):
                raw_box, raw_pts = store[int(idx)]
                box = transform_boxes3d(raw_box.double()[None], mat)
                centre = box[0, :3].numpy()
                if (centre < self.range[:3]).any() or (centre >= self.range[3:]).any():
                    continue
                if bool(overlaps_bev(box, taken).any()):
                    continue
                taken = torch.cat([taken, box])
                new_boxes.append(box.float())
                new_labels.append(label)
                new_points.append(transform_points(raw_pts, mat).to(device, dtype))
        if not new_boxes:
            return points, points.new_zeros(0, 7), torch.zeros(0, dtype=torch.long,
                                                                  device=device)
        pasted = torch.cat(new_boxes).to(device)
        under = points_in_boxes(points, pasted, margin=self.margin).any(dim=1)
        points = torch.cat([points[~under]] + new_points)
        return points, pasted, torch.tensor(new_labels, dtype=torch.long, device=device)
