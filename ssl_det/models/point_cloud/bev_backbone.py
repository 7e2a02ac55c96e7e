"""A 2D BEV backbone (strided conv stages) and a neck that upsamples and concatenates them
(the SECOND / PointPillars layout), small enough to train on a CPU."""
from typing import List, Sequence

import torch
from mmcv.cnn import ConvModule
from torch import Tensor, nn

from ssl_det.registry import MODELS

_NORM = dict(type='BN', eps=1e-3, momentum=0.1)


@MODELS.register_module()
class BEVBackbone(nn.Module):
    """Stages of 3×3 convs; stage ``i`` starts with a stride ``strides[i]`` conv.

    Args:
        in_channels (int): canvas channels (the pillar features).
        out_channels (list[int]): channels per stage.
        layers (list[int]): extra 3×3 convs per stage after the strided one.
        strides (list[int]): stride of each stage's first conv.
    """

    def __init__(self, in_channels: int = 64, out_channels: Sequence[int] = (64, 128, 256),
                 layers: Sequence[int] = (3, 5, 5), strides: Sequence[int] = (2, 2, 2),
                 norm_cfg: dict = _NORM):
        super().__init__()
        if not len(out_channels) == len(layers) == len(strides):
            raise ValueError('out_channels, layers and strides need one entry per stage')
        self.stages = nn.ModuleList()
        channels = in_channels
        for out, n, stride in zip(out_channels, layers, strides):
            blocks = [ConvModule(channels, out, 3, stride=stride, padding=1, bias=False,
                                 norm_cfg=norm_cfg)]
            blocks += [ConvModule(out, out, 3, padding=1, bias=False, norm_cfg=norm_cfg)
                       for _ in range(n)]
            self.stages.append(nn.Sequential(*blocks))
            channels = out

    def forward(self, x: Tensor) -> List[Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


@MODELS.register_module()
class BEVNeck(nn.Module):
    """Bring every stage to one stride (transposed conv up, or strided conv down) and
    concatenate.

    Args:
        in_channels (list[int]): channels of the backbone's stages.
        out_channels (list[int]): channels of each stage after resampling.
        upsample_strides (list[float]): factor per stage (>= 1 upsamples, < 1 downsamples).
    """

    def __init__(self, in_channels: Sequence[int] = (64, 128, 256),
                 out_channels: Sequence[int] = (128, 128, 128),
                 upsample_strides: Sequence[float] = (1, 2, 4), norm_cfg: dict = _NORM):
        super().__init__()
        self.blocks = nn.ModuleList()
        for cin, cout, s in zip(in_channels, out_channels, upsample_strides):
            if s >= 1:
                k = int(round(s))
                conv = nn.ConvTranspose2d(cin, cout, k, stride=k, bias=False)
            else:
                k = int(round(1 / s))
                conv = nn.Conv2d(cin, cout, k, stride=k, bias=False)
            self.blocks.append(nn.Sequential(conv, nn.BatchNorm2d(cout, eps=norm_cfg['eps'],
                                                                  momentum=norm_cfg['momentum']),
                                             nn.ReLU(inplace=True)))
        self.out_channels = int(sum(out_channels))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        return torch.cat([block(f) for block, f in zip(self.blocks, feats)], dim=1)
