"""``PillarDetector``: a LiDAR 3D detector built from registered parts that trains and
evaluates on a CPU as on a GPU.

points → :class:`PillarVoxelizer` → :class:`PillarFeatureNet` → :class:`PillarScatter`
(BEV canvas) → :class:`BEVBackbone` → :class:`BEVNeck` → :class:`CenterHead3D` (heatmap,
rotated NMS). It follows mmdet's ``BaseDetector`` interface (``loss`` / ``predict`` /
``_forward`` on ``inputs=dict(points=[Tensor (N, C), ...])`` and
:class:`~ssl_det.structures.PointCloudDataSample` lists), so mmengine's runner, the EMA hook
and the teacher–student wrappers drive it like a 2D detector. Any part can be swapped in a
config for another registered module with the same interface.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from mmdet.models.detectors.base import BaseDetector
from torch import Tensor

from ssl_det.registry import MODELS
from ssl_det.structures.bev_shuffle import moves_features, unshuffle_bev_map

from .voxel_encoder import grid_shape


@MODELS.register_module()
class PillarDetector(BaseDetector):
    """Pillar-based single-stage LiDAR detector.

    Args:
        voxelizer, voxel_encoder, middle_encoder, backbone, neck, bbox_head (dict): configs of
            the parts. When ``middle_encoder`` has no ``output_shape`` it is derived from the
            voxelizer's range and voxel size.
        data_preprocessor (dict, optional): defaults to ``PointCloudDataPreprocessor`` (moves
            the points and samples to the device; points stay a list).
    """

    def __init__(self, voxelizer: dict, voxel_encoder: dict, middle_encoder: dict,
                 backbone: dict, neck: dict, bbox_head: dict,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        # built here through ssl_det's registry, so it resolves under any default scope
        if data_preprocessor is None or isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(
                data_preprocessor or dict(type='PointCloudDataPreprocessor'))
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.voxelizer = MODELS.build(voxelizer)
        self.voxel_encoder = MODELS.build(voxel_encoder)
        middle_encoder = dict(middle_encoder)
        middle_encoder.setdefault('output_shape', grid_shape(voxelizer['point_cloud_range'],
                                                             voxelizer['voxel_size']))
        self.middle_encoder = MODELS.build(middle_encoder)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck)
        bbox_head = dict(bbox_head)
        if test_cfg is not None:
            bbox_head['test_cfg'] = {**bbox_head.get('test_cfg', {}), **test_cfg}
        self.bbox_head = MODELS.build(bbox_head)
        self.train_cfg, self.test_cfg = train_cfg, test_cfg

    @property
    def num_classes(self) -> int:
        return self.bbox_head.num_classes

    def extract_feat(self, batch_inputs: dict,
                     batch_data_samples: Optional[List] = None) -> Tensor:
        """BEV features. A sample whose ``bev_shuffle`` record asks for
        ``'unshuffle_features'`` (``BEVPatchShuffle(mode='unshuffle_features')``) has its
        backbone outputs moved back patch by patch before the neck (HSSDA)."""
        points = batch_inputs['points']
        kept, point_coors = self.voxelizer(points)
        feats, coors = self.voxel_encoder(kept, point_coors)
        canvas = self.middle_encoder(feats, coors, len(points))
        return self.neck(self.unshuffle(self.backbone(canvas), batch_data_samples))

    def unshuffle(self, feats: Sequence[Tensor], batch_data_samples: Optional[List]
                  ) -> Sequence[Tensor]:
        """Undo each sample's patch shuffle on every backbone output (a no-op without one)."""
        infos = [ds.metainfo.get('bev_shuffle') for ds in batch_data_samples or ()]
        todo = [i for i, info in enumerate(infos) if moves_features(info)]
        if not todo:
            return feats
        r = self.voxelizer.point_cloud_range
        bev_range = [float(r[0]), float(r[1]), float(r[3]), float(r[4])]
        out = []
        ny, nx = self.middle_encoder.ny, self.middle_encoder.nx
        for feat in feats:
            rows, cols = feat.shape[-2:]
            if nx % cols or ny % rows or nx // cols != ny // rows:
                raise ValueError(
                    f'a backbone output of {rows}x{cols} cells does not tile the {ny}x{nx} '
                    'BEV canvas at one integer stride, so its patches cannot be moved back; '
                    'choose a point_cloud_range whose canvas divides by every stride')
            out.append(torch.stack([unshuffle_bev_map(f, infos[i], bev_range) if i in todo
                                    else f for i, f in enumerate(feat)]))
        return type(feats)(out) if isinstance(feats, tuple) else out

    def loss(self, batch_inputs: dict, batch_data_samples: List) -> dict:
        return self.bbox_head.loss(self.extract_feat(batch_inputs, batch_data_samples),
                                   batch_data_samples)

    def loss_parts(self, parts: Sequence[Tuple[dict, List]]) -> List[dict]:
        """The losses of several batches, ``[(batch_inputs, batch_data_samples), ...]``, from
        one forward pass over their concatenation: BatchNorm normalises the batches together
        (in training mode, with their joint statistics, as HSSDA's student sees labeled and
        unlabeled scenes in one batch). Each batch's loss is the one ``loss`` computes on it
        alone, normalisation included; with frozen BatchNorm the two are equal."""
        points, samples, sizes = [], [], []
        for inputs, batch_samples in parts:
            if set(inputs) != {'points'} or len(inputs['points']) != len(batch_samples):
                raise ValueError('loss_parts takes dict(points=[...]) inputs, one point cloud '
                                 f'per sample; got keys {sorted(inputs)} with '
                                 f"{len(inputs.get('points', ()))} clouds for "
                                 f'{len(batch_samples)} samples')
            points += list(inputs['points'])
            samples += list(batch_samples)
            sizes.append(len(batch_samples))
        heat, reg = self.bbox_head(self.extract_feat(dict(points=points), samples))
        return [self.bbox_head.loss_by_feat(h, r, batch_samples) for h, r, (_, batch_samples)
                in zip(heat.split(sizes), reg.split(sizes), parts)]

    def predict(self, batch_inputs: dict, batch_data_samples: List, rescale: bool = True,
                with_heatmap: bool = False) -> List:
        """Boxes into each sample's ``pred_instances_3d``; with ``with_heatmap`` also the
        head's (C, H, W) heatmap probabilities into its ``pred_heatmap``."""
        feats = self.extract_feat(batch_inputs, batch_data_samples)
        if with_heatmap:
            results, heat = self.bbox_head.predict(feats, batch_data_samples, with_heatmap=True)
            for ds, h in zip(batch_data_samples, heat):
                ds.pred_heatmap = h
        else:
            results = self.bbox_head.predict(feats, batch_data_samples)
        for ds, res in zip(batch_data_samples, results):
            ds.pred_instances_3d = res
        return batch_data_samples

    def _forward(self, batch_inputs: dict, batch_data_samples: Optional[List] = None
                 ) -> Tuple[Tensor, Tensor]:
        return self.bbox_head(self.extract_feat(batch_inputs, batch_data_samples))
