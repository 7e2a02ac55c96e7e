"""Run-time preparation shared by tools/train.py and tools/test.py."""
import os.path as osp
from types import SimpleNamespace

import mmengine.config.config as config_module
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData

from ssl_det.ops import replace_roi_align
from ssl_det.utils.launch import memoize_config_formatting, use_channels_last

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_config_text_is_formatted_once_and_unchanged(monkeypatch):
    cfg = Config.fromfile(osp.join(ROOT, 'configs/deeppcb/faster-rcnn_r18_fpn_deeppcb_sup.py'))
    expected = cfg.pretty_text  # mmengine's own formatting
    calls = []
    yapf = config_module.FormatCode

    def counting(text, **kwargs):
        calls.append(text)
        return yapf(text, **kwargs)

    monkeypatch.setattr(config_module, 'FormatCode', counting)
    memoize_config_formatting()
    memoize_config_formatting()  # idempotent: not wrapped twice
    assert cfg.pretty_text == expected and cfg.pretty_text == expected
    assert len(calls) == 1
    cfg.train_cfg.max_iters = 7  # a changed config is formatted again, not served stale
    assert 'max_iters=7' in cfg.pretty_text and len(calls) == 2


def _demo_detector():
    from mmengine.registry import init_default_scope

    import ssl_det  # noqa: F401
    from ssl_det.registry import MODELS
    init_default_scope('ssl_det')
    cfg = Config.fromfile(osp.join(ROOT, 'configs/demo/faster-rcnn_r18_fpn_demo_sup-10pct.py'))
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def _demo_batch():
    from mmdet.structures import DetDataSample
    gen = torch.Generator().manual_seed(1)
    inputs = torch.rand(2, 3, 128, 128, generator=gen) * 255
    samples = []
    for boxes in ([[10., 12., 40., 50.], [60., 60., 100., 90.]], [[30., 20., 70., 64.]]):
        sample = DetDataSample(metainfo=dict(img_shape=(128, 128), ori_shape=(128, 128),
                                             scale_factor=(1., 1.), pad_shape=(128, 128),
                                             batch_input_shape=(128, 128)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes),
                                           labels=torch.zeros(len(boxes), dtype=torch.long))
        samples.append(sample)
    return inputs, samples


def test_channels_last_trains_the_same_detector_with_nhwc_weights():
    """``use_channels_last`` stores every convolution weight NHWC, the backbone's outputs
    follow, and a training step (losses and gradients) matches the NCHW model's."""
    plain, nhwc = _demo_detector(), _demo_detector()
    plain.train(), nhwc.train()
    # 'auto' leaves a model with mmcv's RoIAlign alone (its CPU kernel needs NCHW) ...
    assert use_channels_last(SimpleNamespace(model=nhwc), Config()) is False
    assert not nhwc.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    # ... and converts it once ssl_det's RoIAlign, which reads either layout, replaced it
    assert replace_roi_align(nhwc) > 0
    assert use_channels_last(SimpleNamespace(model=nhwc), Config()) is True
    convs = [m.weight for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not plain.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    inputs, samples = _demo_batch()
    feats_a, feats_b = plain.extract_feat(inputs), nhwc.extract_feat(inputs)
    assert all(f.is_contiguous(memory_format=torch.channels_last) for f in feats_b)
    for x, y in zip(feats_a, feats_b):  # float32 sums in another order: 1e-5 of the scale
        assert (x - y).abs().max() <= 2e-5 * x.abs().max()
    # the heads' losses on the same proposals (a random model's objectness scores nearly
    # tie, so that proposals from the two layouts' rounding could differ in order)
    gen = torch.Generator().manual_seed(3)
    proposals = []
    for _ in samples:
        xy = torch.rand(40, 2, generator=gen) * 90
        proposals.append(InstanceData(bboxes=torch.cat([xy, xy + 8 + torch.rand(
            40, 2, generator=gen) * 30], 1)))
    losses = []
    for model, feats in ((plain, feats_a), (nhwc, feats_b)):
        torch.manual_seed(2)  # the RoI sampler draws
        loss = model.rpn_head.loss(feats, samples)
        # (the RoI head pops the proposals' boxes: a fresh copy each)
        loss.update(model.roi_head.loss(feats, [p.clone() for p in proposals], samples))
        losses.append(loss)
    a, b = losses
    assert set(a) == set(b) and {'loss_rpn_cls', 'loss_cls', 'loss_bbox'} <= set(a)
    for key in a:
        for x, y in zip(*(v if isinstance(v, list) else [v] for v in (a[key], b[key]))):
            assert torch.allclose(x, y, rtol=1e-4, atol=1e-5), key
    for model, loss in ((plain, a), (nhwc, b)):
        model.parse_losses(loss)[0].backward()
    checked = 0
    for (name, p), q in zip(plain.named_parameters(), nhwc.parameters()):
        if p.grad is not None:
            assert (p.grad - q.grad).abs().max() <= 1e-3 * p.grad.abs().max() + 1e-8, name
            checked += 1
    assert checked > 20


def test_channels_last_is_off_when_the_config_says_so_or_not_on_the_cpu():
    model = _demo_detector()
    replace_roi_align(model)
    runner = SimpleNamespace(model=model)
    assert use_channels_last(runner, Config(dict(channels_last=False))) is False
    assert not model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match='channels_last'):
        use_channels_last(runner, Config(dict(channels_last='yes')))
    meta = SimpleNamespace(model=torch.nn.Conv2d(3, 4, 3, device='meta'))
    assert use_channels_last(meta, Config()) is False  # 'auto': not on the CPU
    assert use_channels_last(SimpleNamespace(model=torch.nn.Linear(3, 4)), Config()) is False
