"""Config overrides that point the demo configs at generated test data."""
import os.path as osp
import uuid

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


def semi_3d_overrides(root: str, iters: int = 3, **extra) -> dict:
    """``--cfg-options`` for a few iterations of the 3D HSSDA-style config on generated
    scenes in ``root``: fresh names for mmengine's global instances, thresholds low enough
    for an untrained teacher's boxes (scores about 0.1) to flow, loading in-process."""
    opts = {'experiment_name': f'test_{uuid.uuid4().hex[:8]}', 'load_from': None,
            # a visualizer of its own (mmengine keeps instances by name): pictures land here
            'visualizer.name': f'vis_{uuid.uuid4().hex[:8]}',
            'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
            'default_hooks.checkpoint.interval': iters, 'default_hooks.logger.interval': 1,
            # as many labeled as unlabeled scenes (the config takes twice as many unlabeled)
            'train_dataloader.batch_size': 4, 'train_dataloader.sampler.batch_size': 4,
            'train_dataloader.sampler.source_ratio': [1, 1],
            'custom_hooks.2.burn_in_iters': 1, 'custom_hooks.3.interval': 2,
            'model.pseudo_label.init_high': 0.1, 'model.pseudo_label.init_low': 0.05,
            'model.pseudo_label.high_floor': 0.05, 'model.pseudo_label.low_floor': 0.01,
            'model.low_score_thr': 0.01, 'model.detector.test_cfg.score_thr': 0.01}
    for i in range(2):
        opts[f'train_dataloader.dataset.datasets.{i}.data_root'] = root
    for loader in ('val_dataloader', 'test_dataloader'):
        opts[f'{loader}.dataset.data_root'] = root
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts[f'{loader}.num_workers'] = 0
        opts[f'{loader}.persistent_workers'] = False
    opts.update(extra)
    return opts
