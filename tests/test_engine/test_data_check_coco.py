"""DataCheckHook's labeled/unlabeled category check on loaded COCO datasets: ssl_det's
CocoDataset keeps the file's categories, so the check does not read the files again."""
import json
import os

import pytest
from mmdet.datasets import CocoDataset as MMDetCocoDataset
from mmengine.dataset import ConcatDataset

from ssl_det.datasets import CocoDataset
from ssl_det.engine.hooks.data_check_hook import check_dataset

CATS = [dict(id=1, name='person'), dict(id=3, name='car')]
ARGS = dict(data_root='', data_prefix=dict(img=''), pipeline=[])


def _write(path, images=3, categories=CATS, annotations=True):
    coco = dict(images=[dict(id=i + 1, file_name=f'{i}.jpg', width=64, height=48)
                        for i in range(images)],
                annotations=[dict(id=i + 1, image_id=i + 1, category_id=1, bbox=[1, 1, 9, 9],
                                  area=81, iscrowd=0) for i in range(images)]
                if annotations else [],
                categories=categories)
    path.write_text(json.dumps(coco))
    return str(path)


def _concat(cls, labeled, unlabeled):
    return ConcatDataset([cls(ann_file=f, **ARGS) for f in (labeled, unlabeled)])


def test_categories_are_kept_and_the_file_is_dropped(tmp_path):
    dataset = CocoDataset(ann_file=_write(tmp_path / 'a.json', categories=list(reversed(CATS))),
                          **ARGS)
    assert dataset.file_categories == list(reversed(CATS))
    assert not hasattr(dataset, 'coco')  # mmdet's load_data_list deleted the parsed file
    assert len(dataset) == 3 and dataset.get_data_info(0)['instances']
    assert CocoDataset(ann_file=str(tmp_path / 'a.json'), lazy_init=True,
                       **ARGS).file_categories is None


def test_check_reads_no_file_again(tmp_path):
    labeled, unlabeled = _write(tmp_path / 'l.json'), _write(tmp_path / 'u.json', images=5,
                                                             annotations=False)
    dataset = _concat(CocoDataset, labeled, unlabeled)
    os.remove(labeled)  # the check must work from what the datasets kept
    os.remove(unlabeled)
    assert check_dataset(dataset, 'train', check_images=False) == 8


def test_mismatch_is_found_without_the_files(tmp_path):
    labeled = _write(tmp_path / 'l.json')
    unlabeled = _write(tmp_path / 'u.json', categories=[dict(id=1, name='person'),
                                                        dict(id=3, name='truck')])
    dataset = _concat(CocoDataset, labeled, unlabeled)
    os.remove(labeled)
    os.remove(unlabeled)
    with pytest.raises(ValueError, match=r"categories of the labeled file .*l\.json and the "
                       r"unlabeled file .*u\.json differ \(different names: 3: 'car' vs "
                       r"'truck'\)"):
        check_dataset(dataset, 'train', check_images=False)


def test_a_file_without_categories_is_named(tmp_path):
    labeled = _write(tmp_path / 'l.json')
    unlabeled = _write(tmp_path / 'u.json', categories=[], annotations=False)
    with pytest.raises(ValueError, match=r'unlabeled file .*u\.json has no `categories`'):
        check_dataset(_concat(CocoDataset, labeled, unlabeled), 'train', check_images=False)


def test_mmdet_coco_dataset_falls_back_to_the_files(tmp_path):
    labeled = _write(tmp_path / 'l.json')
    unlabeled = _write(tmp_path / 'u.json', categories=[dict(id=1, name='person')],
                       annotations=False)
    dataset = _concat(MMDetCocoDataset, labeled, unlabeled)
    with pytest.raises(ValueError, match=r"differ \(only in labeled: 3='car'\)"):
        check_dataset(dataset, 'train', check_images=False)


def test_a_split_with_zero_images_is_named(tmp_path):
    """A dataset that does not check itself (mmdet's CocoDataset without serialisation)
    left with zero images: the start-up check raises, naming the split and its file."""
    unlabeled = _write(tmp_path / 'u.json', images=0, annotations=False)
    dataset = MMDetCocoDataset(ann_file=unlabeled, serialize_data=False, **ARGS)
    assert len(dataset) == 0
    with pytest.raises(ValueError, match=r'unlabeled split .*u\.json has zero images'):
        check_dataset(dataset, 'unlabeled', check_images=False)
