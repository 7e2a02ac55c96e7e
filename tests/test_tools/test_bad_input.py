"""Bad data stops a run at start-up with an error that names the file."""
import json
import os
import os.path as osp
import shutil
import uuid

import pytest

from demo_helpers import ROOT, as_cli, data_overrides
from tools import train as train_tool

SUP_CFG = osp.join(ROOT, 'configs/demo/faster-rcnn_r18_fpn_demo_sup-all.py')


def _runner(root, work_dir, **extra):
    opts = data_overrides(root)
    opts.update({'train_cfg.max_iters': 1, 'train_dataloader.batch_size': 2,
                 'experiment_name': f'bad_{uuid.uuid4().hex[:8]}'})
    opts.update(extra)
    args = [SUP_CFG, '--work-dir', str(work_dir), '--cfg-options', *as_cli(opts)]
    return train_tool.build_runner(train_tool.parse_args(args))


@pytest.fixture
def demo_copy(tiny_demo, tmp_path):
    root = tmp_path / 'demo'
    shutil.copytree(tiny_demo, root)
    return str(root)


def test_missing_annotation_file(demo_copy, tmp_path):
    os.remove(osp.join(demo_copy, 'annotations', 'instances_train.json'))
    runner = _runner(demo_copy, tmp_path / 'w')
    with pytest.raises(FileNotFoundError, match='instances_train.json'):
        runner.train()


def test_image_listed_but_missing(demo_copy, tmp_path):
    data = json.load(open(osp.join(demo_copy, 'annotations', 'instances_train.json')))
    victim = data['images'][3]['file_name']
    os.remove(osp.join(demo_copy, 'images', victim))
    runner = _runner(demo_copy, tmp_path / 'w')
    with pytest.raises(FileNotFoundError, match=osp.basename(victim)):
        runner.train()


def test_split_with_zero_images(demo_copy, tmp_path):
    path = osp.join(demo_copy, 'annotations', 'instances_train.json')
    data = json.load(open(path))
    data['images'], data['annotations'] = [], []
    json.dump(data, open(path, 'w'))
    runner = _runner(demo_copy, tmp_path / 'w')
    with pytest.raises(ValueError, match='instances_train.json has zero images'):
        runner.train()
