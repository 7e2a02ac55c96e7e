"""A centre-heatmap head for rotated 3D boxes on a BEV feature map (CenterPoint's idea,
one head for all classes).

Per BEV cell the head predicts a heatmap score per class and, at object centres, a box code:
``(dx_cell, dy_cell)`` sub-cell offset, ``z`` (box centre), ``log(dx, dy, dz)``,
``(sin yaw, cos yaw)``; with ``heading='double_angle'`` also ``(sin 2 yaw, cos 2 yaw)``,
the heading's axis, which a car's front and its back share. Training: mmdet's
``GaussianFocalLoss`` on the heatmap (Gaussian peaks at box centres, radius from the box's
footprint via mmdet's ``gaussian_radius``) and L1 on the code at the centre cells. Regions
of ``ignored_instances_3d`` boxes are left out of the heatmap loss (neither foreground nor
background); an instance with a ``weights`` value below 1 (a teacher's soft pseudo box)
scales the heatmap loss over its Gaussian and its code loss.
Decoding: local maxima, top-k, then class-wise rotated NMS on ssl_det's BEV IoU kernel.

IoU branch (``iou_branch``, off by default; CIA-SSD's and AFDetV2's IoU-aware score,
3DIoUMatch's localisation filter for pseudo labels): one more channel of the ``reg`` branch
predicts, at a cell, the 3D IoU of the box decoded there with the object it stands for.
It learns (binary cross-entropy against the IoU) at the labels' centre cells and at each
frame's own top heatmap peaks, where a peak on no object of its class has target 0: the
head's false boxes are its negatives. Decoding then scores a box
``score ** (1 - power) * iou ** power``, so a teacher's thresholds and tiers see how well
each box is placed, not only how sure the heatmap is that something is there.

Dense distillation (a teacher's whole heatmap as a soft target, ``TeacherStudent3D``'s
``dense_weight``): a sample that carries ``soft_heatmap`` (C, H, W, the teacher's
probabilities on the student's cells, :meth:`CenterHead3D.warp_heatmap`) and
``soft_heatmap_valid`` (H, W) adds ``loss_heatmap_soft``, GFL's quality focal loss
(binary cross-entropy against the soft target, times ``|p - t| ** 2``) over its valid cells,
divided by the sum of the targets there.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.models.utils.gaussian_target import (gaussian2D, gaussian_radius,
                                                gen_gaussian_target,
                                                get_local_maximum, get_topk_from_heatmap,
                                                transpose_and_gather_feat)
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ssl_det.ops import iou_3d, rotated_iou_bev
from ssl_det.registry import MODELS
from ssl_det.structures.bev_shuffle import unshuffle_points
from ssl_det.structures.box3d import points_in_boxes, transform_points

CODE_SIZE = 8  # offset x/y, z, log dx/dy/dz, sin, cos
HEADINGS = ('sincos', 'double_angle')  # the second adds sin 2 yaw, cos 2 yaw


def rotated_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thr: float) -> Tensor:
    """Greedy class-wise NMS on BEV IoU; returns kept indices in descending score order."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    boxes, labels = boxes[order], labels[order]
    iou = rotated_iou_bev(boxes.double(), boxes.double())
    iou[labels[:, None] != labels[None, :]] = 0
    over = (iou > iou_thr).cpu().numpy()
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]


def best_other_class_score(class_scores: Tensor, labels: Tensor) -> Tensor:
    """(N,) the highest probability at each box's peak of a class other than its own
    (``class_scores`` (N, C) as :meth:`CenterHead3D.predict` gives them)."""
    others = class_scores.clone()
    others.scatter_(1, labels.long()[:, None], 0.0)
    return others.amax(dim=1)


@MODELS.register_module()
class CenterHead3D(nn.Module):
    """Centre-heatmap 3D box head.

    Args:
        in_channels (int): BEV feature channels.
        num_classes (int): object classes.
        point_cloud_range (list[float]): as the voxelizer's.
        voxel_size (list[float]): pillar size.
        out_size_factor (int): feature-map stride in pillars.
        feat_channels (int): channels of the shared conv.
        loss_heatmap, loss_bbox (dict): mmdet loss configs.
        code_weights (list[float], optional): per-channel weights of the box code's L1
            loss (one a code channel); None: 1 each.
        heading (str): how the code holds the heading. ``'sincos'``: ``(sin, cos)`` of the
            yaw, decoded with ``atan2``. ``'double_angle'``: also ``(sin 2 yaw, cos 2 yaw)``
            (code channels 8 and 9), the heading's axis: decoded from them, and pointed by
            ``(sin, cos)`` (the direction of the two along the axis nearer to it). Where the
            head cannot tell a front from a back, ``(sin, cos)`` averages the two and turns
            short, with a direction between them, while the axis channels agree; on the 3D
            demo scenes most of the AP the headings cost is such in-between headings
            (``docs/benchmarks.md``). Default: ``'sincos'``; the 3D demo's configs set
            ``'double_angle'``.
        min_radius (int): smallest Gaussian radius in cells; min_overlap: gaussian_radius's.
        test_cfg (dict): ``max_per_img`` top-k peaks, ``score_thr``, ``nms_thr`` (BEV IoU),
            ``max_num`` boxes kept after NMS.
        iou_branch (dict | bool, optional): the IoU branch (module docstring); None or False:
            off, True: on with the defaults. Keys:
            ``loss_weight`` (1.0) of ``loss_iou``; ``num_peaks`` (16), the top heatmap peaks
            of each frame that learn their IoU beside the labels' centre cells; ``power``
            (0.5), the IoU's exponent in a decoded box's score (0: the heatmap's score, the
            IoU only reported as ``iou_scores``).
    """

    def __init__(self, in_channels: int, num_classes: int, point_cloud_range: Sequence[float],
                 voxel_size: Sequence[float], out_size_factor: int = 2, feat_channels: int = 64,
                 loss_heatmap: dict = dict(type='GaussianFocalLoss', loss_weight=1.0),
                 loss_bbox: dict = dict(type='L1Loss', reduction='mean', loss_weight=0.25),
                 code_weights: Optional[Sequence[float]] = None, min_radius: int = 2,
                 min_overlap: float = 0.1,
                 test_cfg: Optional[dict] = None, heading: str = 'sincos',
                 iou_branch: Optional[dict] = None):
        super().__init__()
        if heading not in HEADINGS:
            raise ValueError(f'heading must be one of {HEADINGS}, got {heading!r}')
        self.heading = heading
        self.code_size = CODE_SIZE + (2 if heading == 'double_angle' else 0)
        code_weights = (1.0,) * self.code_size if code_weights is None else code_weights
        if len(code_weights) != self.code_size:
            raise ValueError(f'code_weights must have one weight a code channel: '
                             f'{self.code_size} with heading={heading!r}, got '
                             f'{len(code_weights)}')
        self.iou_cfg = None
        if iou_branch is True:  # the defaults (``--cfg-options ...iou_branch=True``)
            iou_branch = {}
        if iou_branch is not None and iou_branch is not False:
            if not isinstance(iou_branch, dict):
                raise TypeError(f'iou_branch must be a dict, True or None, got {iou_branch!r}')
            unknown = set(iou_branch) - {'loss_weight', 'num_peaks', 'power'}
            if unknown:
                raise ValueError(f'iou_branch takes loss_weight, num_peaks and power; got '
                                 f'{sorted(unknown)}')
            self.iou_cfg = dict(loss_weight=1.0, num_peaks=16, power=0.5)
            self.iou_cfg.update(iou_branch)
            if not 0.0 <= float(self.iou_cfg['power']) <= 1.0:
                raise ValueError(f"iou_branch power must be in [0, 1], got "
                                 f"{self.iou_cfg['power']!r}")
            if int(self.iou_cfg['num_peaks']) < 0:
                raise ValueError(f"iou_branch num_peaks must be >= 0, got "
                                 f"{self.iou_cfg['num_peaks']!r}")
        self.num_classes = num_classes
        self.pc_range = [float(v) for v in point_cloud_range]
        self.cell = (voxel_size[0] * out_size_factor, voxel_size[1] * out_size_factor)
        self.min_radius, self.min_overlap = min_radius, min_overlap
        self.test_cfg = dict(max_per_img=100, score_thr=0.1, nms_thr=0.1, max_num=50)
        self.test_cfg.update(test_cfg or {})
        self.shared = nn.Sequential(nn.Conv2d(in_channels, feat_channels, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(feat_channels), nn.ReLU(inplace=True))
        self.heatmap = nn.Sequential(nn.Conv2d(feat_channels, feat_channels, 3, padding=1),
                                     nn.ReLU(inplace=True),
                                     nn.Conv2d(feat_channels, num_classes, 1))
        self.reg = nn.Sequential(nn.Conv2d(feat_channels, feat_channels, 3, padding=1),
                                 nn.ReLU(inplace=True),
                                 nn.Conv2d(feat_channels,
                                           self.code_size + self.iou_channels, 1))
        nn.init.constant_(self.heatmap[-1].bias, -2.19)
        self.loss_heatmap = MODELS.build(loss_heatmap)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.register_buffer('code_weights', torch.tensor(code_weights, dtype=torch.float32),
                             persistent=False)

    @property
    def iou_channels(self) -> int:
        """1 with the IoU branch (the ``reg`` map's last channel, a logit), else 0."""
        return 0 if self.iou_cfg is None else 1

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        x = self.shared(x)
        # the maps leave in NCHW whatever layout the features had (channels-last from
        # PillarScatter): the decoding and the loss index them as such
        return (self.heatmap(x).contiguous(), self.reg(x).contiguous())

    # --------------------------------------------------------------------------- targets
    def _cells(self, boxes: Tensor) -> Tuple[Tensor, Tensor]:
        cx = (boxes[:, 0] - self.pc_range[0]) / self.cell[0]
        cy = (boxes[:, 1] - self.pc_range[1]) / self.cell[1]
        return cx, cy

    def _grid_cells(self, boxes: Tensor, shape: Tuple[int, int]):
        """Each box's centre in cells (``cx``, ``cy``), its cell (``ix``, ``iy``) and
        whether that cell is on the (H, W) grid: the boxes that become targets."""
        h, w = shape
        cx, cy = self._cells(boxes)
        ix, iy = cx.floor().long(), cy.floor().long()
        return cx, cy, ix, iy, (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)

    def yaw_axis_targets(self, gt: InstanceData, shape: Tuple[int, int]) -> Tensor:
        """(K,) bool, one per target of :meth:`get_targets` in its order: True where
        ``gt.yaw_axis`` (an optional field) marks a box whose heading teaches only its axis,
        not its direction (:meth:`nearer_heading`)."""
        device = self.code_weights.device
        inside = self._grid_cells(gt.bboxes_3d.to(device).float(), shape)[4]
        if 'yaw_axis' not in gt:
            return torch.zeros(int(inside.sum()), dtype=torch.bool, device=device)
        return gt.yaw_axis.to(device).bool()[inside]

    @staticmethod
    def nearer_heading(reg: Tensor, codes: Tensor, axis: Tensor) -> Tensor:
        """The code targets (K, code size) with the heading of each axis-only target
        (``axis``) reversed (sin and cos negated; the axis channels of ``'double_angle'``
        are a heading's and its reverse's alike) where the reverse is nearer, in L1, to the
        predicted (sin, cos) in ``reg``: the heading's loss is then the smaller of the two,
        so such a box never teaches a direction. The choice takes no gradient."""
        if not bool(axis.any()):
            return codes
        pred, target = reg[:, 6:8].detach(), codes[:, 6:8]
        reverse = axis & ((pred + target).abs().sum(dim=1) < (pred - target).abs().sum(dim=1))
        sign = 1.0 - 2.0 * reverse.to(codes.dtype)
        return torch.cat([codes[:, :6], target * sign[:, None], codes[:, 8:]], dim=1)

    def get_targets(self, gt: InstanceData, shape: Tuple[int, int],
                    ignored: Optional[InstanceData] = None):
        """Heatmap (C, H, W), heatmap loss weight (H, W), code targets (K, code size), flat
        indices (K,) and the code weights of each target (K, code size) for one frame: its
        instance weight (``weights``, 1 without), times ``yaw_weights`` (``gt``'s optional
        field) on the heading's sin and cos.

        All boxes at once: mmdet's Gaussian kernel (``gaussian2D``, sigma = diameter / 6) is
        made once per distinct radius and scattered with ``amax`` into the class planes; a
        soft instance (``weights`` < 1) multiplies the loss weight over its kernel's
        footprint. Equal to :meth:`get_targets_loop` (mmdet's ``gen_gaussian_target`` per
        box; the weight's products up to rounding order)."""
        h, w = shape
        device = self.code_weights.device
        heat = torch.zeros(self.num_classes, h, w, device=device)
        weight = torch.ones(h, w, device=device)
        boxes = gt.bboxes_3d.to(device).float()
        labels = gt.labels_3d.to(device).long()
        inst_w = gt.weights.to(device).float() if 'weights' in gt else torch.ones(len(boxes),
                                                                                  device=device)
        cx, cy, ix, iy, inside = self._grid_cells(boxes, shape)
        keep = torch.nonzero(inside).flatten()
        boxes, labels, inst_w = boxes[keep], labels[keep], inst_w[keep]
        cx, cy, ix, iy = cx[keep], cy[keep], ix[keep], iy[keep]
        radii = self._radii(boxes)
        heat_flat, weight_flat = heat.view(-1), weight.view(-1)
        for radius in sorted(set(radii.tolist())):
            sel = torch.nonzero(radii == radius).flatten()
            kernel = gaussian2D(radius, sigma=(2 * radius + 1) / 6, dtype=heat.dtype,
                                device=device)
            offsets = torch.arange(-radius, radius + 1, device=device)
            ys, xs = torch.broadcast_tensors(iy[sel, None, None] + offsets[None, :, None],
                                             ix[sel, None, None] + offsets[None, None, :])
            valid = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            cell = (ys * w + xs)[valid]
            values = kernel.expand(len(sel), -1, -1)[valid]
            plane = labels[sel, None, None].expand_as(ys)[valid]
            heat_flat.scatter_reduce_(0, plane * (h * w) + cell, values, reduce='amax')
            soft = (inst_w[sel] < 1)[:, None, None] & valid & (kernel > 0)
            if bool(soft.any()):
                factor = inst_w[sel, None, None].expand_as(ys)[soft]
                weight_flat.scatter_reduce_(0, (ys * w + xs)[soft], factor, reduce='prod')
        if ignored is not None and len(ignored) > 0:
            weight = self._ignore_weight(ignored.bboxes_3d.to(device).float(), heat, weight)
        codes = torch.stack([cx - ix, cy - iy, boxes[:, 2], boxes[:, 3].log(),
                             boxes[:, 4].log(), boxes[:, 5].log()]
                            + self._heading_code(boxes[:, 6]), dim=1)
        return heat, weight, codes, iy * w + ix, self._code_weights(gt, keep, inst_w)

    def _heading_code(self, yaw: Tensor) -> List[Tensor]:
        """The code's heading channels of yaws (any shape): sin, cos, and with
        ``'double_angle'`` sin 2 yaw, cos 2 yaw."""
        code = [yaw.sin(), yaw.cos()]
        if self.heading == 'double_angle':
            code += [(2 * yaw).sin(), (2 * yaw).cos()]
        return code

    def decode_yaw(self, code: Tensor) -> Tensor:
        """Yaws from codes (..., code size): ``atan2(sin, cos)``; with ``'double_angle'``
        the axis ``atan2(sin 2 yaw, cos 2 yaw) / 2``, turned by pi where ``(sin, cos)``
        points the other way along it, in (-pi, pi]."""
        if self.heading == 'sincos':
            return torch.atan2(code[..., 6], code[..., 7])
        axis = torch.atan2(code[..., 8], code[..., 9]) / 2  # (-pi/2, pi/2]
        back = axis.cos() * code[..., 7] + axis.sin() * code[..., 6] < 0
        yaw = axis + back.to(axis.dtype) * np.pi
        return torch.atan2(yaw.sin(), yaw.cos())

    def _code_weights(self, gt: InstanceData, keep: Tensor, inst_w: Tensor) -> Tensor:
        """(K, code size) weights of the kept targets' codes: the instance weight on every
        entry, times ``gt.yaw_weights`` (where present) on the heading's sin and cos (the
        direction; ``'double_angle'``'s axis channels keep the instance weight)."""
        code_w = inst_w[:, None].repeat(1, self.code_size)
        if 'yaw_weights' in gt:
            code_w[:, 6:8] *= gt.yaw_weights.to(inst_w)[keep][:, None]
        return code_w

    def _radii(self, boxes: Tensor) -> Tensor:
        """mmdet's ``gaussian_radius`` of each box's footprint in cells (float64, as the
        scalar version computes it), truncated and floored at ``min_radius``."""
        height = boxes[:, 4].double().cpu().numpy() / self.cell[1]
        width = boxes[:, 3].double().cpu().numpy() / self.cell[0]
        o = self.min_overlap  # the scalar version's operations, in its order
        b1 = height + width
        c1 = width * height * (1 - o) / (1 + o)
        r1 = (b1 - np.sqrt(b1**2 - 4 * 1 * c1)) / (2 * 1)
        b2 = 2 * (height + width)
        c2 = (1 - o) * width * height
        r2 = (b2 - np.sqrt(b2**2 - 4 * 4 * c2)) / (2 * 4)
        b3 = -2 * o * (height + width)
        c3 = (o - 1) * width * height
        r3 = (b3 + np.sqrt(b3**2 - 4 * (4 * o) * c3)) / (2 * (4 * o))
        radius = np.minimum(np.minimum(r1, r2), r3).astype(np.int64)
        return torch.as_tensor(np.maximum(radius, self.min_radius), device=boxes.device)

    def get_targets_loop(self, gt: InstanceData, shape: Tuple[int, int],
                         ignored: Optional[InstanceData] = None):
        """:meth:`get_targets` one box at a time with mmdet's ``gen_gaussian_target`` (the
        reference that the tests and ``benchmarks/pillar_step.py`` compare it with)."""
        h, w = shape
        device = self.code_weights.device
        heat = torch.zeros(self.num_classes, h, w, device=device)
        weight = torch.ones(h, w, device=device)
        boxes = gt.bboxes_3d.to(device).float()
        labels = gt.labels_3d.to(device)
        inst_w = gt.weights.to(device).float() if 'weights' in gt else torch.ones(len(boxes),
                                                                                  device=device)
        cx, cy, ix, iy, inside = self._grid_cells(boxes, shape)
        codes, index, code_w = [], [], []
        yaw_w = gt.yaw_weights.to(device).float() if 'yaw_weights' in gt else None
        for k in torch.nonzero(inside).flatten().tolist():
            size = (float(boxes[k, 4]) / self.cell[1], float(boxes[k, 3]) / self.cell[0])
            radius = max(self.min_radius, int(gaussian_radius(size, self.min_overlap)))
            gen_gaussian_target(heat[labels[k]], (int(ix[k]), int(iy[k])), radius)
            if inst_w[k] < 1:  # a soft (weighted) instance: scale the loss around it
                foot = gen_gaussian_target(torch.zeros_like(weight), (int(ix[k]), int(iy[k])),
                                           radius)
                weight = torch.where(foot > 0, weight * inst_w[k], weight)
            codes.append(torch.stack([cx[k] - ix[k], cy[k] - iy[k], boxes[k, 2],
                                      boxes[k, 3].log(), boxes[k, 4].log(), boxes[k, 5].log()]
                                     + self._heading_code(boxes[k, 6])))
            index.append(iy[k] * w + ix[k])
            entry = inst_w[k].repeat(self.code_size)
            if yaw_w is not None:
                entry[6:8] *= yaw_w[k]
            code_w.append(entry)
        if ignored is not None and len(ignored) > 0:
            weight = self._ignore_weight(ignored.bboxes_3d.to(device).float(), heat, weight)
        if codes:
            return heat, weight, torch.stack(codes), torch.stack(index), torch.stack(code_w)
        return (heat, weight, boxes.new_zeros(0, self.code_size),
                torch.zeros(0, dtype=torch.long, device=device),
                boxes.new_zeros(0, self.code_size))

    def cell_centres(self, h: int, w: int, device=None) -> Tensor:
        """(H * W, 2) BEV position of each cell's centre on an (H, W) map, row-major."""
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                                indexing='ij')
        return torch.stack([(xs.flatten() + 0.5) * self.cell[0] + self.pc_range[0],
                            (ys.flatten() + 0.5) * self.cell[1] + self.pc_range[1]], dim=1)

    def warp_heatmap(self, heat: Tensor, matrix, shuffle: Optional[dict] = None
                     ) -> Tuple[Tensor, Tensor]:
        """One view's (C, H, W) heatmap seen from another view of the same scene.

        ``matrix`` (4x4) maps the first view's frame to the second's (a weak-to-strong map);
        ``shuffle``, the second view's patch shuffle record when its boxes move with their
        patches, comes after it. Each cell of the second view is traced back (through the
        shuffle's inverse, then ``matrix``'s) to a position in the first, where ``heat`` is
        read bilinearly. Returns the (C, H, W) map on the second view's cells and the (H, W)
        mask of the cells whose source lies on the first view's map."""
        c, h, w = heat.shape
        centres = self.cell_centres(h, w, heat.device).double()
        at = torch.cat([centres, centres.new_zeros(len(centres), 1)], dim=1)
        if shuffle is not None:
            at = unshuffle_points(at, shuffle)
        src = transform_points(at, np.linalg.inv(np.asarray(matrix, np.float64).reshape(4, 4)))
        u = (src[:, 0] - self.pc_range[0]) / (self.cell[0] * w) * 2 - 1
        v = (src[:, 1] - self.pc_range[1]) / (self.cell[1] * h) * 2 - 1
        valid = (u.abs() <= 1) & (v.abs() <= 1)
        grid = torch.stack([u, v], dim=1).view(1, h, w, 2).to(heat.dtype)
        out = nn.functional.grid_sample(heat[None], grid, mode='bilinear',
                                        padding_mode='zeros', align_corners=False)[0]
        return out, valid.view(h, w)

    def _ignore_weight(self, boxes: Tensor, heat: Tensor, weight: Tensor) -> Tensor:
        h, w = weight.shape
        centres = self.cell_centres(h, w, weight.device)
        flat = boxes.clone()
        flat[:, 2] = 0
        flat[:, 5] = 1.0
        cells = torch.cat([centres, centres.new_zeros(len(centres), 1)], dim=1)
        hit = points_in_boxes(cells.cpu(), flat.cpu(), margin=max(self.cell) / 2)
        ignore = hit.any(dim=1).view(h, w).to(weight.device)
        # a true object's peak stays supervised even where an ignored box overlaps it
        ignore &= heat.amax(dim=0) < 1
        return weight.masked_fill(ignore, 0.0)

    # --------------------------------------------------------------------------- loss
    def loss(self, feats: Tensor, batch_data_samples: List) -> Dict[str, Tensor]:
        return self.loss_by_feat(*self(feats), batch_data_samples)

    def loss_by_feat(self, heat_pred: Tensor, reg_pred: Tensor,
                     batch_data_samples: List) -> Dict[str, Tensor]:
        """The loss of the head's outputs (``heat_pred``, ``reg_pred``) on the samples' boxes."""
        b, _, h, w = heat_pred.shape
        heats, weights, codes, idx, code_w, batch_idx, axis = [], [], [], [], [], [], []
        for i, ds in enumerate(batch_data_samples):
            ignored = ds.ignored_instances_3d if 'ignored_instances_3d' in ds else None
            t = self.get_targets(ds.gt_instances_3d, (h, w), ignored)
            axis.append(self.yaw_axis_targets(ds.gt_instances_3d, (h, w)))
            heats.append(t[0])
            weights.append(t[1])
            codes.append(t[2])
            idx.append(t[3])
            code_w.append(t[4])
            batch_idx.append(torch.full_like(t[3], i))
        heat_t = torch.stack(heats)
        weight_t = torch.stack(weights)[:, None].expand_as(heat_t)
        num_pos = max(float(sum(len(c) for c in codes)), 1.0)
        pred = heat_pred.sigmoid().clamp(1e-4, 1 - 1e-4)
        if any('class_set' in ds.gt_instances_3d for ds in batch_data_samples):
            pred, weight_t = self.partial_class_targets(pred, heat_t, weight_t,
                                                        batch_data_samples)
        loss_heat = self.loss_heatmap(pred, heat_t, weight=weight_t, avg_factor=num_pos)
        codes_t, idx_t, bidx = torch.cat(codes), torch.cat(idx), torch.cat(batch_idx)
        if len(codes_t):
            reg = reg_pred.flatten(2)[bidx, :self.code_size, idx_t]  # (K, code size)
            codes_t = self.nearer_heading(reg, codes_t, torch.cat(axis))
            w_t = self.code_weights[None] * torch.cat(code_w)
            loss_bbox = self.loss_bbox(reg, codes_t, weight=w_t, avg_factor=num_pos)
        else:
            loss_bbox = reg_pred.sum() * 0
        losses = dict(loss_heatmap=loss_heat, loss_bbox=loss_bbox)
        if self.iou_cfg is not None:
            logits, targets = self.iou_targets(heat_pred, reg_pred, batch_data_samples,
                                               torch.stack(weights), idx)
            losses['loss_iou'] = (nn.functional.binary_cross_entropy_with_logits(
                logits, targets, reduction='sum') / max(len(targets), 1)
                * float(self.iou_cfg['loss_weight']))
        soft = [i for i, ds in enumerate(batch_data_samples) if 'soft_heatmap' in ds]
        if soft:
            losses['loss_heatmap_soft'] = self.loss_soft_heatmap(
                heat_pred[soft], torch.stack([batch_data_samples[i].soft_heatmap for i in soft]),
                torch.stack([batch_data_samples[i].soft_heatmap_valid for i in soft]))
        return losses

    def decode_boxes(self, reg: Tensor, xs: Tensor, ys: Tensor) -> Tensor:
        """(..., 7) boxes ``(x, y, z, dx, dy, dz, yaw)`` from codes (..., code size, IoU
        channel aside) at cells (``xs``, ``ys``: column and row)."""
        x = (xs + reg[..., 0]) * self.cell[0] + self.pc_range[0]
        y = (ys + reg[..., 1]) * self.cell[1] + self.pc_range[1]
        dims = reg[..., 3:6].clamp(max=6).exp()
        return torch.cat([x[..., None], y[..., None], reg[..., 2:3], dims,
                          self.decode_yaw(reg)[..., None]], dim=-1)

    def iou_targets(self, heat_pred: Tensor, reg_pred: Tensor, batch_data_samples: List,
                    weights: Tensor, centres: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """The IoU branch's logits and targets, both (N,): at each frame's labels' centre
        cells (``centres``, flat, in :meth:`get_targets`' order), the 3D IoU of the box
        decoded there with its label; at the frame's top ``num_peaks`` heatmap peaks (any
        class), the best 3D IoU of the box decoded there with a label of the peak's class
        (0 where none overlaps). Peaks where the heatmap's loss weight (``weights``,
        (B, H, W)) is 0 (ignored regions) are left out. The decoded boxes take no
        gradient."""
        b, _, h, w = heat_pred.shape
        logits, targets = [], []
        num_peaks = min(int(self.iou_cfg['num_peaks']), h * w)
        if num_peaks > 0:
            peaks = get_local_maximum(heat_pred.detach().sigmoid(), kernel=3)
            _, peak_idx, peak_cls, _, _ = get_topk_from_heatmap(peaks, k=num_peaks)
        for i, ds in enumerate(batch_data_samples):
            gt = ds.gt_instances_3d
            boxes = gt.bboxes_3d.to(reg_pred.device).float()
            labels = gt.labels_3d.to(reg_pred.device).long()
            inside = self._grid_cells(boxes, (h, w))[4]
            boxes, labels = boxes[inside], labels[inside]
            flat = reg_pred[i].flatten(1)  # (code size + 1, H * W)
            cells = [centres[i]]
            if num_peaks > 0:
                keep = weights[i].flatten()[peak_idx[i]] > 0
                cells.append(peak_idx[i][keep])
            cells = torch.cat(cells).long()
            if len(cells) == 0:
                continue
            code = flat[:self.code_size, cells].T.detach()
            dec = self.decode_boxes(code, (cells % w).to(code), (cells // w).to(code))
            target = dec.new_zeros(len(cells))
            n_gt = len(centres[i])
            if n_gt:
                target[:n_gt] = iou_3d(dec[:n_gt].double(), boxes.double(),
                                       aligned=True).to(target)
            if len(cells) > n_gt and len(boxes):
                cls = peak_cls[i][keep].long()
                iou = iou_3d(dec[n_gt:].double(), boxes.double()).to(target)
                iou = iou.masked_fill(cls[:, None] != labels[None, :], 0.0)
                target[n_gt:] = iou.amax(dim=1)
            logits.append(flat[self.code_size, cells])
            targets.append(target.clamp(0.0, 1.0))
        if not logits:
            return reg_pred.new_zeros(0), reg_pred.new_zeros(0)
        return torch.cat(logits), torch.cat(targets)

    def partial_class_targets(self, pred: Tensor, heat_t: Tensor, weight_t: Tensor,
                              batch_data_samples: List) -> Tuple[Tensor, Tensor]:
        """The heatmap probabilities and loss weights (both (B, C, H, W)) that partial-class
        boxes teach: a box whose ``gt_instances_3d.class_set`` (an optional (K, C) bool
        field) holds more than its own class teaches that one of those classes is there,
        not which. Over its Gaussian's square (the radius :meth:`get_targets` gives it), its
        own class's probability becomes the set's union, ``1 - prod(1 - p)``, and the set's
        other classes are not taught as background (loss weight 0) where they have no
        target of their own. A box whose set is its class alone changes nothing."""
        h, w = pred.shape[-2:]
        out, weight = pred.clone(), weight_t.clone()
        for b, ds in enumerate(batch_data_samples):
            gt = ds.gt_instances_3d
            if 'class_set' not in gt or len(gt) == 0:
                continue
            boxes = gt.bboxes_3d.to(pred.device).float()
            sets = gt.class_set.to(pred.device).bool()
            labels = gt.labels_3d.to(pred.device).long()
            _, _, ix, iy, inside = self._grid_cells(boxes, (h, w))
            partial = inside & (sets.sum(dim=1) > 1)
            if not bool(partial.any()):
                continue
            radii = self._radii(boxes)
            for k in torch.nonzero(partial).flatten().tolist():
                r = int(radii[k])
                y0, y1 = max(int(iy[k]) - r, 0), min(int(iy[k]) + r + 1, h)
                x0, x1 = max(int(ix[k]) - r, 0), min(int(ix[k]) + r + 1, w)
                members = torch.nonzero(sets[k]).flatten()
                window = pred[b, members, y0:y1, x0:x1]
                out[b, labels[k], y0:y1, x0:x1] = 1 - (1 - window).prod(dim=0)
                for c in members.tolist():
                    if c != int(labels[k]):
                        free = heat_t[b, c, y0:y1, x0:x1] == 0
                        weight[b, c, y0:y1, x0:x1] = weight[b, c, y0:y1, x0:x1].masked_fill(
                            free, 0.0)
        return out.clamp(1e-4, 1 - 1e-4), weight

    @staticmethod
    def loss_soft_heatmap(logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        """Quality focal loss (GFL) of (B, C, H, W) heatmap logits against soft targets in
        [0, 1], over the (B, H, W) ``valid`` cells, divided by the targets' sum there (at
        least 1)."""
        target = target.to(logits.dtype)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction='none')
        focal = bce * (logits.sigmoid() - target).abs().pow(2)
        mask = valid[:, None].to(logits.dtype)
        return (focal * mask).sum() / (target * mask).sum().clamp(min=1.0)

    # --------------------------------------------------------------------------- predict
    def reg_at(self, x: Tensor, inds: Tensor) -> Tensor:
        """The box code at the cells ``inds`` (``(B, k)``, flat ``y * W + x``) of the shared
        features ``x`` (``(B, C, H, W)``): the ``reg`` branch evaluated at those cells only,
        ``(B, k, code size)``, what the full map would give there. Decoding needs the code at
        the top-k peaks, not over the whole map: at KITTI scale the branch's 3x3 convolution
        is a fifth of the head's cost in a teacher's or an evaluation pass."""
        conv, act, out = self.reg
        if not (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)
                and conv.padding == (1, 1) and conv.stride == (1, 1)
                and conv.dilation == (1, 1) and conv.groups == 1
                and conv.padding_mode == 'zeros' and isinstance(act, nn.ReLU)
                and isinstance(out, nn.Conv2d) and out.kernel_size == (1, 1)
                and out.groups == 1):
            return self.reg_at_full_map(x, inds)
        num, channels, _, width = x.shape
        padded = nn.functional.pad(x, (1, 1, 1, 1))  # the convolution's zero padding
        offsets = torch.arange(3, device=x.device)
        # padded cell (y + dy, x + dx) is input cell (y + dy - 1, x + dx - 1)
        rows = (inds // width)[:, :, None, None] + offsets[:, None]  # (B, k, 3, 1)
        cols = (inds % width)[:, :, None, None] + offsets[None, :]  # (B, k, 1, 3)
        batch = torch.arange(num, device=x.device)[:, None, None, None]
        patches = padded[batch, :, rows, cols]  # (B, k, 3, 3, C)
        patches = patches.permute(0, 1, 4, 2, 3).reshape(num, inds.shape[1], channels * 9)
        hidden = act(nn.functional.linear(patches, conv.weight.reshape(conv.out_channels, -1),
                                          conv.bias))
        return nn.functional.linear(hidden, out.weight.flatten(1), out.bias)

    def reg_at_full_map(self, x: Tensor, inds: Tensor) -> Tensor:
        """:meth:`reg_at` the long way: the ``reg`` branch over the whole map, read at
        ``inds`` (for a branch :meth:`reg_at` cannot evaluate cell by cell)."""
        return transpose_and_gather_feat(self.reg(x), inds)

    @torch.no_grad()
    def predict(self, feats: Tensor, batch_data_samples: List, with_heatmap: bool = False):
        """The decoded boxes of each sample; with ``with_heatmap`` also the (B, C, H, W)
        heatmap probabilities they were decoded from: ``(results, heatmap)``.

        Beside ``bboxes_3d``, ``scores_3d`` and ``labels_3d``, each box has two signals a
        teacher's pseudo labels can use: ``class_scores`` (num_classes,), every class's
        heatmap probability at its peak (its own class's is its score), and ``yaw_norm``,
        the length of its regressed (sin, cos): near 1 where the heading is sure, smaller
        where the head averages two headings (a car's front against its back). With the IoU
        branch, ``scores_3d`` is the IoU-aware score and ``iou_scores`` the predicted IoU
        (``class_scores`` stay the heatmap's)."""
        x = self.shared(feats)
        heat_pred = self.heatmap(x).contiguous()  # NCHW, as forward's
        cfg = self.test_cfg
        probs = heat_pred.sigmoid()
        heat = get_local_maximum(probs, kernel=3)
        k = min(cfg['max_per_img'], heat[0].numel())
        scores, inds, labels, ys, xs = get_topk_from_heatmap(heat, k=k)
        reg = self.reg_at(x, inds)  # (B, k, code size)
        # every class's probability at each peak: how sure the class is against the others
        at_peak = probs.flatten(2).gather(2, inds[:, None].expand(-1, probs.shape[1], -1))
        if self.iou_cfg is not None:
            iou = reg[..., self.code_size].sigmoid()
            power = float(self.iou_cfg['power'])
            scores = scores.pow(1.0 - power) * iou.pow(power)
        results = []
        for b in range(heat.shape[0]):
            r = reg[b]
            boxes = self.decode_boxes(r[:, :self.code_size], xs[b], ys[b])
            keep = scores[b] > cfg['score_thr']
            boxes, sc, lab = boxes[keep], scores[b][keep], labels[b][keep].long()
            class_sc, yaw_norm = at_peak[b].T[keep], r[keep, 6:8].norm(dim=1)
            fields = dict(iou_scores=iou[b][keep]) if self.iou_cfg is not None else {}
            keep = rotated_nms(boxes, sc, lab, cfg['nms_thr'])[:cfg['max_num']]
            results.append(InstanceData(bboxes_3d=boxes[keep].float(), scores_3d=sc[keep],
                                        labels_3d=lab[keep], class_scores=class_sc[keep],
                                        yaw_norm=yaw_norm[keep],
                                        **{k: v[keep] for k, v in fields.items()}))
        return (results, probs) if with_heatmap else results
