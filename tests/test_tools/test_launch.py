"""Run-time preparation shared by tools/train.py and tools/test.py."""
import os.path as osp

import mmengine.config.config as config_module
from mmengine.config import Config

from ssl_det.utils.launch import memoize_config_formatting

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
