"""Shared fixtures: tiny generated demo data and config overrides pointing at it."""
import os
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(scope='session')
def tiny_demo(tmp_path_factory):
    """A small demo data set (24 train, 8 val images) with a 25% labeled split."""
    from ssl_det.datasets.coco_split import split_coco
    from ssl_det.datasets.demo_data import make_demo_data
    root = str(tmp_path_factory.mktemp('demo'))
    files = make_demo_data(root, num_train=24, num_val=8, seed=3)
    split_coco(files['train'], [25], folds=1, out_dir=osp.join(root, 'semi_anns'))
    return root


def data_overrides(root: str, semi: bool = False) -> dict:
    """``--cfg-options`` that point a demo config at ``root`` and keep loading in-process."""
    root = root.rstrip('/') + '/'
    opts = {
        'val_dataloader.dataset.data_root': root,
        'test_dataloader.dataset.data_root': root,
        'val_evaluator.ann_file': root + 'annotations/instances_val.json',
        'test_evaluator.ann_file': root + 'annotations/instances_val.json',
    }
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts[f'{loader}.num_workers'] = 0
        opts[f'{loader}.persistent_workers'] = False
    if semi:
        for i in range(2):
            opts[f'train_dataloader.dataset.datasets.{i}.data_root'] = root
    else:
        opts['train_dataloader.dataset.data_root'] = root
    return opts


def as_cli(opts: dict) -> list:
    return [f'{k}={v}' for k, v in opts.items()]
