"""What a checkpoint carries across a resume: SafeCheckpointHook's rewrite loaded back by
load_checkpoint_file, and RandomStateHook's generator states."""
import random
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from ssl_det.engine.hooks import RandomStateHook, SafeCheckpointHook
from ssl_det.models.pseudo_labels import DynamicThreshold
from ssl_det.utils.checkpoint import load_checkpoint_file


def test_checkpoint_loads_weights_only_and_restores_hub_and_thresholds(tmp_path):
    """A checkpoint with mmengine's history buffers, numpy values and a policy's adapted
    thresholds is written loadable with ``weights_only=True``; loaded back, the message
    hub's buffers are history buffers again and the thresholds are the adapted ones."""
    policy = DynamicThreshold(num_classes=2, min_count=1)
    policy.update(torch.tensor([0.95, 0.9, 0.2, 0.1, 0.85, 0.15]),
                  torch.tensor([0, 0, 0, 0, 1, 1]))
    assert not torch.equal(policy.high_thr, DynamicThreshold(num_classes=2).high_thr)
    loss = HistoryBuffer()
    for value in (1.5, 0.5, 0.25):
        loss.update(value)
    checkpoint = dict(
        meta=dict(seed=np.int64(5), iter=3),
        state_dict=OrderedDict((f'pseudo_label.{k}', v)
                               for k, v in policy.state_dict().items()),
        message_hub=dict(log_scalars={'train/loss': loss},
                         runtime_info={'keep_ckpt_ids': np.arange(2)}))
    SafeCheckpointHook().before_save_checkpoint(SimpleNamespace(iter=3), checkpoint)
    path = tmp_path / 'iter_3.pth'
    torch.save(checkpoint, path)
    torch.load(path, weights_only=True)  # no pickled Python objects left
    loaded = load_checkpoint_file(str(path))
    assert loaded['meta'] == dict(seed=5, iter=3)
    restored = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(restored, HistoryBuffer)
    assert restored.current() == 0.25 and restored.mean() == 0.75
    assert loaded['message_hub']['runtime_info']['keep_ckpt_ids'].tolist() == [0, 1]
    fresh = DynamicThreshold(num_classes=2, min_count=1)
    fresh.load_state_dict({k[len('pseudo_label.'):]: v for k, v in loaded['state_dict'].items()})
    assert torch.equal(fresh.high_thr, policy.high_thr)
    assert torch.equal(fresh.low_thr, policy.low_thr)


def _seed(python, numpy, torch_seed):
    random.seed(python)
    np.random.seed(numpy)
    torch.manual_seed(torch_seed)


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_a_resume_continues_every_generator_and_load_from_leaves_them(tmp_path):
    """RandomStateHook saves Python's, NumPy's and torch's states in the checkpoint (loadable
    with ``weights_only=True``); a resumed run continues them once restored, a run that only
    loads weights (``load_from``) keeps its own."""
    _seed(1, 2, 3)
    hook, checkpoint = RandomStateHook(), {}
    hook.before_save_checkpoint(None, checkpoint)
    expected = _draw()
    torch.save(checkpoint, tmp_path / 'iter_1.pth')
    checkpoint = torch.load(tmp_path / 'iter_1.pth', weights_only=True)

    _seed(7, 7, 7)
    own = _draw()
    _seed(7, 7, 7)
    hook.after_load_checkpoint(SimpleNamespace(_resume=False), checkpoint)
    assert hook.restore() is False
    assert _draw() == own
    hook.after_load_checkpoint(SimpleNamespace(_resume=True), checkpoint)
    assert hook.restore() is True
    assert _draw() == expected
    assert hook.restore() is False  # restored once
