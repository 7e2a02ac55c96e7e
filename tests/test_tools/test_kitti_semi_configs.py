"""The KITTI semi-supervised configs (1%, 2%, 20% labeled) train on KITTI-format data
prepared exactly as ``data/README.md`` says: convert, split, build the labeled split's
object database. Generated frames stand in for KITTI (nothing is downloaded)."""
import glob
import math
import os
import os.path as osp
import re

import numpy as np
import pytest

from demo_helpers import ROOT, as_cli
from test_datasets.test_kitti_converter import CAR, PED, write_kitti_frame
from tools import train as train_tool
from tools.dataset_converters import create_gt_database, kitti_to_ssl_det
from tools.misc import split_point_cloud

CYC = np.array([15.0, -6.0, -0.9, 1.8, 0.6, 1.7, 1.1])
NUM_FRAMES = 50  # 1% of 50 rounds to one labeled frame


@pytest.fixture(scope='module')
def kitti_root(tmp_path_factory):
    """``<tmp>/data/kitti`` prepared with the commands of data/README.md."""
    base = tmp_path_factory.mktemp('kitti_semi')
    root = base / 'data' / 'kitti'
    for i in range(NUM_FRAMES):
        shift = np.array([i % 7, (i % 5) - 2, 0, 0, 0, 0, 0.1 * i])
        write_kitti_frame(root, f'{i:06d}', seed=i,
                          objects=[('Car', CAR + shift, 0.0, 0, 150),
                                   ('Pedestrian', PED + shift, 0.1, 1, 60),
                                   ('Cyclist', CYC - shift, 0.0, 0, 80)])
    kitti_to_ssl_det.main([str(root), '--out', str(root / 'kitti_infos_train.json')])
    (root / 'ImageSets').mkdir()
    (root / 'ImageSets' / 'val.txt').write_text('000000\n000001\n')  # a short validation
    kitti_to_ssl_det.main([str(root), '--out', str(root / 'kitti_infos_val.json'),
                           '--split-file', 'ImageSets/val.txt'])
    split_point_cloud.main([str(root / 'kitti_infos_train.json'), '--percent', '1', '2', '20',
                            '--folds', '1', '--out-dir', str(root / 'semi_anns')])
    for pct in (1, 2, 20):
        create_gt_database.main([
            str(root / 'semi_anns' / f'kitti_infos_train.1@{pct}.json'),
            '--out-dir', str(root / f'gt_database_1@{pct}'), '--unlabeled-info-file',
            str(root / 'semi_anns' / f'kitti_infos_train.1@{pct}-unlabeled.json')])
    return base


@pytest.mark.slow
@pytest.mark.parametrize('pct', [1, 2, 20])
def test_kitti_semi_config_trains(kitti_root, tmp_path, monkeypatch, pct):
    """Every split's config builds on its files and loads a batch (object sampling from its
    own database, both views of the unlabeled frames); the 2% config, which the others
    derive from, trains one iteration (the model is full KITTI size: slow on a CPU)."""
    monkeypatch.chdir(kitti_root)  # the configs' data_root is data/kitti/
    cfg = osp.join(ROOT, f'configs/point_cloud/hssda_pillar-center_kitti-3class_semi-{pct}pct.py')
    opts = {'experiment_name': f'kitti_semi_{pct}_{os.getpid()}',
            'visualizer.name': f'vis_kitti_semi_{pct}_{os.getpid()}',
            'train_cfg.max_iters': 1, 'train_cfg.val_interval': 1000,
            'default_hooks.checkpoint.interval': 1, 'default_hooks.logger.interval': 1,
            'train_dataloader.batch_size': 2, 'train_dataloader.sampler.batch_size': 2,
            'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
            'val_dataloader.num_workers': 0, 'val_dataloader.persistent_workers': False}
    runner = train_tool.build_runner(train_tool.parse_args(
        [cfg, '--work-dir', str(tmp_path), '--cfg-options', *as_cli(opts)]))
    labeled, unlabeled = runner.train_dataloader.dataset.datasets
    assert len(labeled) == math.floor(NUM_FRAMES * pct / 100 + 0.5)  # halves round up
    assert len(labeled) + len(unlabeled) == NUM_FRAMES
    batch = runner.model.data_preprocessor(next(iter(runner.train_dataloader)), True)
    assert len(batch['inputs']['sup']['points']) == 1
    assert len(batch['inputs']['unsup_student']['points']) == 1
    assert batch['data_samples']['unsup_student'][0].bev_shuffle['grid'] == (2, 2)
    # GT sampling on the student's whole input, from the split's own database, up to the
    # labeled pipeline's targets
    sampler = next(t for t in runner.cfg.train_dataloader.dataset.datasets[0].pipeline
                   if t['type'] == 'ObjectSample')
    paste = runner.cfg.model.labeled_paste
    assert paste.num_paste == 'fill' and paste.db_sampler == sampler
    assert sampler.db_info_file == f'data/kitti/gt_database_1@{pct}/dbinfos.json'
    if pct != 2:
        return
    runner.train()
    log = open(glob.glob(str(tmp_path / '*' / '*.log'))[0]).read()
    for key in ('sup_loss_heatmap', 'unsup_loss_heatmap', 'pseudo_num_labeled_pasted'):
        values = [float(v) for v in re.findall(rf' {key}: ([-\d.e+naif]+)', log)]
        assert len(values) == 1 and all(math.isfinite(v) for v in values), key
    assert osp.isfile(tmp_path / 'iter_1.pth')
