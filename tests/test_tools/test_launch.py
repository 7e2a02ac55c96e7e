"""Run-time preparation shared by tools/train.py and tools/test.py."""
import os.path as osp
import uuid
from types import SimpleNamespace

import mmengine.config.config as config_module
import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.structures import InstanceData

from ssl_det.ops import replace_roi_align
from ssl_det.utils.launch import (memoize_config_formatting, prepare_config, resume_config,
                                  use_channels_last, use_skip_non_finite)

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


class _OneConv(BaseModel):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return dict(loss=self.conv(inputs).mean())


def test_prepared_config_reaches_the_runner(tmp_path):
    """What tools/train.py sets before building the Runner is what the Runner builds: the
    required hooks once each (a config's own kept), the optimizer wrapper that skips
    non-finite steps, ssl_det's checkpoint hook, resumable loop and log processor, and on
    a resume the checkpoint's seed (an AmpOptimWrapper is left as it is)."""
    cfg = Config(dict(
        custom_hooks=[dict(type='DataCheckHook', check_images=False)],
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=2),
        log_processor=dict(window_size=1), randomness=dict(seed=99)))
    prepare_config(cfg)
    checkpoint = tmp_path / 'iter_1.pth'
    torch.save(dict(meta=dict(seed=5, iter=1), state_dict={}), checkpoint)
    assert resume_config(cfg, str(checkpoint)) == str(checkpoint)
    runner = Runner(model=_OneConv(), work_dir=str(tmp_path),
                    experiment_name=f'prepared_{uuid.uuid4().hex[:8]}',
                    train_dataloader=dict(dataset=[dict(inputs=torch.zeros(3, 4, 4))] * 2,
                                          batch_size=1, sampler=dict(type='DefaultSampler'),
                                          collate_fn=dict(type='default_collate')),
                    optim_wrapper=cfg.optim_wrapper, default_hooks=cfg.default_hooks,
                    custom_hooks=cfg.custom_hooks, train_cfg=cfg.train_cfg,
                    log_processor=cfg.log_processor, randomness=cfg.randomness,
                    resume=cfg.resume, load_from=cfg.load_from, default_scope='ssl_det',
                    log_level='WARNING')
    hooks = [type(h) for h in runner.hooks]
    for name in ('SafeCheckpointHook', 'DataCheckHook', 'NonFiniteGuardHook',
                 'RandomStateHook', 'CheckpointHook'):
        assert [h.__module__.split('.')[0] for h in hooks if h.__name__ == name] == \
            ['ssl_det'], name
    assert next(h for h in runner.hooks if type(h).__name__ == 'DataCheckHook') \
        .check_images is False
    wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    assert type(wrapper).__name__ == 'SkipNonFiniteOptimWrapper'
    assert type(runner.train_loop).__module__.startswith('ssl_det.')
    assert type(runner.log_processor).__name__ == 'SemiLogProcessor'
    assert runner.seed == 5 and runner._resume and runner._load_from == str(checkpoint)
    amp = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper', optimizer=dict(type='SGD'))))
    use_skip_non_finite(amp)
    assert amp.optim_wrapper.type == 'AmpOptimWrapper'
