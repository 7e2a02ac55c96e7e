"""Points → pillars → a BEV pseudo-image (PointPillars' front end, CPU and GPU alike).

``PillarVoxelizer`` gives every point its pillar (mmcv's dynamic ``Voxelization``, which has
a CPU kernel; points outside the range are dropped). ``PillarFeatureNet`` extends each point
with its offsets to its pillar's point mean and to the pillar's centre, runs a shared linear
layer + BN + ReLU and takes the max over the pillar's points with a scatter (no padding to a
fixed number of points per pillar, so no point is dropped and no work is wasted on empty
slots). ``PillarScatter`` places the pillar features on the BEV grid. Grid axes: x →
columns, y → rows, row 0 at ``y_min``.
"""
from typing import List, Sequence, Tuple

import torch
from mmcv.ops import Voxelization
from torch import Tensor, nn

from ssl_det.registry import MODELS


def grid_shape(point_cloud_range: Sequence[float], voxel_size: Sequence[float]) -> Tuple[int, int]:
    """(ny, nx) of the BEV grid; the range must be a whole number of voxels."""
    nx = (point_cloud_range[3] - point_cloud_range[0]) / voxel_size[0]
    ny = (point_cloud_range[4] - point_cloud_range[1]) / voxel_size[1]
    if abs(nx - round(nx)) > 1e-4 or abs(ny - round(ny)) > 1e-4:
        raise ValueError(f'point_cloud_range {list(point_cloud_range)} is not a whole number of '
                         f'voxels of size {list(voxel_size)} in x and y')
    return int(round(ny)), int(round(nx))


@MODELS.register_module()
class PillarVoxelizer(nn.Module):
    """Dynamic pillar voxelization of a batch of point clouds.

    Args:
        voxel_size (list[float]): (vx, vy, vz); vz spans the whole z range for pillars.
        point_cloud_range (list[float]): (x_min, y_min, z_min, x_max, y_max, z_max); points
            outside are dropped.
    """

    def __init__(self, voxel_size: Sequence[float], point_cloud_range: Sequence[float]):
        super().__init__()
        self.voxel_size = list(voxel_size)
        self.point_cloud_range = list(point_cloud_range)
        self.voxel_layer = Voxelization(self.voxel_size, self.point_cloud_range, -1)

    @torch.no_grad()
    def forward(self, points: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """Returns the in-range points (N, C) and their pillars (N, 4: batch, z, y, x)."""
        kept, coors = [], []
        for i, pts in enumerate(points):
            c = self.voxel_layer(pts.contiguous())
            valid = (c >= 0).all(dim=1)
            kept.append(pts[valid])
            coors.append(nn.functional.pad(c[valid], (1, 0), value=i))
        return torch.cat(kept), torch.cat(coors)


@MODELS.register_module()
class PillarFeatureNet(nn.Module):
    """Per-pillar features from its points.

    Each point (x, y, z, extra...) is extended with its offset to the pillar's point mean
    (3) and to the pillar's xy centre (2); a linear layer + BN1d + ReLU per point, then the
    max over the pillar's points.

    With ``height_bins > 0`` each pillar also gets its height profile: the fraction of its
    points in each of ``height_bins`` equal slices of the range's z extent (PIXOR's height
    slices, as densities), appended after the learned features. A max over the points keeps
    the highest and lowest point but not how the points spread between them: a post is as
    dense at its top as at its foot, a person thins out at the legs and at the head.

    Args:
        in_channels (int): point width used (x, y, z + extra features).
        feat_channels (int): learned output channels.
        voxel_size, point_cloud_range: as in :class:`PillarVoxelizer`.
        height_bins (int): height slices of the profile; 0 (default) adds none. The output
            width is ``feat_channels + height_bins`` (:attr:`out_channels`).
    """

    def __init__(self, in_channels: int = 4, feat_channels: int = 64,
                 voxel_size: Sequence[float] = (0.32, 0.32, 4.0),
                 point_cloud_range: Sequence[float] = (0, -32, -3, 64, 32, 1),
                 height_bins: int = 0):
        super().__init__()
        if height_bins < 0:
            raise ValueError(f'height_bins must be >= 0, got {height_bins}')
        self.in_channels = in_channels
        self.height_bins = int(height_bins)
        self.out_channels = feat_channels + self.height_bins
        self.z_range = (float(point_cloud_range[2]), float(point_cloud_range[5]))
        self.linear = nn.Linear(in_channels + 5, feat_channels, bias=False)
        self.norm = nn.BatchNorm1d(feat_channels, eps=1e-3)
        self.register_buffer('voxel_xy', torch.tensor(voxel_size[:2], dtype=torch.float32),
                             persistent=False)
        self.register_buffer('offset_xy', torch.tensor(
            [voxel_size[0] / 2 + point_cloud_range[0], voxel_size[1] / 2 + point_cloud_range[1]],
            dtype=torch.float32), persistent=False)
        self.grid = grid_shape(point_cloud_range, voxel_size)

    def pillar_index(self, coors: Tensor) -> Tuple[Tensor, int]:
        """Each point's pillar id (ids ordered by batch, y, x, as ``torch.unique`` of the
        cells would give them) and the number of pillars. Marks the occupied cells of the
        dense (B, ny, nx) grid and counts them: no sort (``torch.unique`` sorts, and was
        the front end's largest cost on CPU)."""
        ny, nx = self.grid
        if len(coors) == 0:
            return coors.new_zeros(0, dtype=torch.long), 0
        key = (coors[:, 0].long() * ny + coors[:, 2].long()) * nx + coors[:, 3].long()
        occupied = torch.zeros((int(coors[:, 0].max()) + 1) * ny * nx, dtype=torch.bool,
                               device=coors.device)
        occupied[key] = True
        ids = occupied.cumsum(0) - 1
        return ids[key], int(ids[-1]) + 1

    def height_profile(self, z: Tensor, inverse: Tensor, count: Tensor) -> Tensor:
        """(V, height_bins): each pillar's fraction of points in each height slice (slice 0
        at the range's bottom; points on or past an edge count in the edge's slice)."""
        z_min, z_max = self.z_range
        bins = ((z - z_min) * (self.height_bins / (z_max - z_min))).floor().long()
        bins = bins.clamp_(0, self.height_bins - 1)
        hist = z.new_zeros(len(count) * self.height_bins).index_add_(
            0, inverse * self.height_bins + bins, torch.ones_like(z))
        return hist.view(len(count), self.height_bins) / count[:, None]

    def forward(self, points: Tensor, coors: Tensor) -> Tuple[Tensor, Tensor]:
        """Returns pillar features (V, out_channels) and pillar coordinates (V, 4: batch, z,
        y, x)."""
        points = points[:, :self.in_channels]
        inverse, num = self.pillar_index(coors)
        count = torch.zeros(num, device=points.device).index_add_(
            0, inverse, torch.ones_like(inverse, dtype=points.dtype))
        mean = points.new_zeros(num, 3).index_add_(0, inverse, points[:, :3]) / count[:, None]
        centre = coors[:, [3, 2]].to(points.dtype) * self.voxel_xy + self.offset_xy
        feats = torch.cat([points, points[:, :3] - mean[inverse], points[:, :2] - centre], dim=1)
        x = self.norm(self.linear(feats)).relu()
        out = x.new_zeros(num, x.shape[1]).scatter_reduce(
            0, inverse[:, None].expand_as(x), x, reduce='amax', include_self=False)
        if self.height_bins:
            out = torch.cat([out, self.height_profile(points[:, 2], inverse, count)], dim=1)
        pillar_coors = coors.new_zeros(num, 4)
        pillar_coors[inverse] = coors
        return out, pillar_coors


@MODELS.register_module()
class PillarScatter(nn.Module):
    """Scatter pillar features (V, C) onto a (B, C, ny, nx) BEV canvas.

    With ``channels_last`` (default) the canvas is laid out channels-last (NHWC strides), the
    layout in which it is filled, so no copy is made, and every convolution after it runs in
    that layout: on CPU, oneDNN's convolutions then took about 0.55-0.6x the time of the
    NCHW ones for the BEV backbone, neck and head (forward + backward). The values are the
    same up to the kernels' rounding.
    """

    def __init__(self, in_channels: int, output_shape: Sequence[int], channels_last: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.ny, self.nx = int(output_shape[0]), int(output_shape[1])
        self.channels_last = channels_last

    def forward(self, features: Tensor, coors: Tensor, batch_size: int) -> Tensor:
        canvas = features.new_zeros(batch_size, self.ny * self.nx, self.in_channels)
        index = coors[:, 2].long() * self.nx + coors[:, 3].long()
        canvas[coors[:, 0].long(), index] = features
        canvas = canvas.view(batch_size, self.ny, self.nx, self.in_channels).permute(0, 3, 1, 2)
        return canvas if self.channels_last else canvas.contiguous()
