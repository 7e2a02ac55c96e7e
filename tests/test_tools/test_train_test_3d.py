"""tools/train.py and tools/test.py run the 3D demo config unchanged (same flags, same work
dir layout, weights-only checkpoints) on a few generated LiDAR scenes."""
import glob
import math
import os.path as osp
import re
import uuid

import pytest
import torch

from demo_helpers import ROOT, as_cli
from ssl_det.datasets.demo_data_3d import make_demo_data_3d
from tools import test as test_tool
from tools import train as train_tool

CFG = osp.join(ROOT, 'configs/point_cloud/pillar-center_demo3d_sup-10pct.py')


def overrides(root):
    opts = {'experiment_name': f'test_{uuid.uuid4().hex[:8]}'}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts[f'{loader}.dataset.data_root'] = root
        opts[f'{loader}.num_workers'] = 0
        opts[f'{loader}.persistent_workers'] = False
    return opts


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo3d'))
    # 20 frames: the 10% split holds 2 labeled frames, as the demo config expects
    make_demo_data_3d(root, num_train=20, num_val=3, seed=0, verbose=False)
    return root + '/'


@pytest.fixture(scope='module')
def trained(scenes, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('train3d')
    opts = overrides(scenes)
    opts.update({'train_cfg.max_iters': 3, 'train_cfg.val_interval': 3,
                 'default_hooks.logger.interval': 1, 'train_dataloader.batch_size': 2})
    args = train_tool.parse_args([CFG, '--work-dir', str(work_dir), '--cfg-options',
                                  *as_cli(opts)])
    train_tool.build_runner(args).train()
    return work_dir


def test_train_logs_finite_losses_and_evaluates_3d_ap(trained):
    ckpt = osp.join(trained, 'iter_3.pth')
    checkpoint = torch.load(ckpt, weights_only=True)
    assert checkpoint['meta']['iter'] == 3
    assert any(k.startswith('bbox_head.heatmap') for k in checkpoint['state_dict'])
    log = open(glob.glob(osp.join(trained, '*', '*.log'))[0]).read()
    for name in ('loss_heatmap', 'loss_bbox'):
        values = [float(v) for v in re.findall(rf'Iter\(train\).*? {name}: ([-\d.e+naif]+)', log)]
        assert len(values) == 3 and all(math.isfinite(v) for v in values)
    assert re.search(r'ap3d/mAP: [\d.]+', log)
    assert "ap3d/3d/Car@0.70/R40" in log


def test_test_tool_evaluates_the_checkpoint(scenes, trained, tmp_path):
    metrics = test_tool.main([CFG, osp.join(trained, 'iter_3.pth'), '--work-dir', str(tmp_path),
                              '--cfg-options', *as_cli(overrides(scenes))])
    assert 0.0 <= metrics['ap3d/mAP'] <= 1.0
    assert 'ap3d/bev/mAP@set0/R40' in metrics
