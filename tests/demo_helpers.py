"""Config overrides that point the demo configs at generated test data."""
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def data_overrides(root: str, semi: bool = False) -> dict:
    """``--cfg-options`` that point a demo config at ``root`` and keep loading in-process."""
    root = root.rstrip('/') + '/'
    opts = {
        'load_from': None,  # stage-2 demo configs continue a stage-1 checkpoint; tests start fresh
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
