import hashlib
import json
import os
import os.path as osp

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from ssl_det.datasets.demo_data import CLASSES, make_demo_data


def _tree_hash(root):
    digest = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = osp.join(dirpath, name)
            digest.update(osp.relpath(path, root).encode())
            digest.update(open(path, 'rb').read())
    return digest.hexdigest()


def test_valid_coco_with_masks_inside_images(tmp_path):
    files = make_demo_data(str(tmp_path), num_train=20, num_val=6, seed=1)
    for split, ann_file in files.items():
        coco = COCO(ann_file)
        assert len(coco.getImgIds()) == (20 if split == 'train' else 6)
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
        anns = coco.loadAnns(coco.getAnnIds())
        assert len(anns) >= len(coco.getImgIds())  # at least one object per image on average
        for ann in anns:
            img = coco.loadImgs(ann['image_id'])[0]
            assert osp.isfile(osp.join(tmp_path, 'images', img['file_name']))
            x, y, w, h = ann['bbox']
            assert w > 0 and h > 0
            assert 0 <= x and 0 <= y and x + w <= img['width'] and y + h <= img['height']
            mask = coco.annToMask(ann)
            assert mask.shape == (img['height'], img['width'])
            assert mask.sum() == ann['area'] > 0
            ys, xs = np.nonzero(mask)
            # the box is the tight box of the visible mask
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
            assert mask_utils.area(ann['segmentation']) == ann['area']
    # train and val images have disjoint ids
    train_ids = {i['id'] for i in json.load(open(files['train']))['images']}
    val_ids = {i['id'] for i in json.load(open(files['val']))['images']}
    assert not train_ids & val_ids


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    make_demo_data(str(tmp_path / 'a'), num_train=6, num_val=2, seed=7)
    make_demo_data(str(tmp_path / 'b'), num_train=6, num_val=2, seed=7)
    make_demo_data(str(tmp_path / 'c'), num_train=6, num_val=2, seed=8)
    assert _tree_hash(tmp_path / 'a') == _tree_hash(tmp_path / 'b')
    assert _tree_hash(tmp_path / 'a') != _tree_hash(tmp_path / 'c')


def test_every_class_appears(tmp_path):
    files = make_demo_data(str(tmp_path), num_train=30, num_val=2, seed=0)
    cats = {a['category_id'] for a in json.load(open(files['train']))['annotations']}
    assert cats == set(range(1, len(CLASSES) + 1))
