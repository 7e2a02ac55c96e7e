"""Every shipped config parses, and its model builds (no weights are loaded)."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from demo_helpers import ROOT
from ssl_det.registry import HOOKS, MODELS

CONFIGS = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p)


def test_configs_found():
    assert len(CONFIGS) >= 15


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, ROOT))
def test_config_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'ssl_det'
    model = MODELS.build(cfg.model)
    if cfg.model.type == 'TeacherStudent':
        assert cfg.val_cfg.type == 'TeacherStudentValLoop'
        hooks = [HOOKS.build(h) for h in cfg.custom_hooks]
        assert any(type(h).__name__ == 'MeanTeacherHook' for h in hooks)
        sampler = cfg.train_dataloader.sampler
        assert sampler.type == 'MultiSourceSampler'
        assert sampler.batch_size == cfg.train_dataloader.batch_size
        assert model.teacher is not model.student
