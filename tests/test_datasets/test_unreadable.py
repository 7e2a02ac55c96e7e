"""Unreadable images and dirty COCO annotation files."""
import copy

import cv2
import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile

from ssl_det.datasets.semi_checks import check_coco_content
from ssl_det.datasets.transforms import LoadImageFromFile
from ssl_det.datasets.unreadable import UnreadableDataError, truncation


def _image(tmp_path, ext):
    img = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    path = tmp_path / f'img{ext}'
    cv2.imwrite(str(path), img)
    return path


@pytest.mark.parametrize('ext', ['.jpg', '.png'])
def test_good_image_loads_as_mmcv_loads_it(tmp_path, ext):
    path = _image(tmp_path, ext)
    ours = LoadImageFromFile()(dict(img_path=str(path)))
    theirs = MMCVLoadImageFromFile()(dict(img_path=str(path)))
    assert np.array_equal(ours['img'], theirs['img']) and ours['img_shape'] == (40, 60)


@pytest.mark.parametrize('ext', ['.jpg', '.png'])
def test_truncated_image_is_named_not_decoded_grey(tmp_path, ext):
    path = _image(tmp_path, ext)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    assert truncation(path.read_bytes())
    with pytest.raises(UnreadableDataError, match=rf'img\{ext}: truncated'):
        LoadImageFromFile()(dict(img_path=str(path)))
    if ext == '.jpg':  # cut just before its end marker, mmcv decodes it without a word
        path.write_bytes(data[:-2])
        assert MMCVLoadImageFromFile()(dict(img_path=str(path)))['img'] is not None
        with pytest.raises(UnreadableDataError, match='truncated JPEG'):
            LoadImageFromFile()(dict(img_path=str(path)))


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(UnreadableDataError, match='nope.png: file not found'):
        LoadImageFromFile()(dict(img_path=str(tmp_path / 'nope.png')))
    (tmp_path / 'empty.png').write_bytes(b'')
    with pytest.raises(UnreadableDataError, match='empty file'):
        LoadImageFromFile()(dict(img_path=str(tmp_path / 'empty.png')))
    (tmp_path / 'text.jpg').write_bytes(b'this is not an image at all')
    with pytest.raises(UnreadableDataError, match='cannot be decoded'):
        LoadImageFromFile()(dict(img_path=str(tmp_path / 'text.jpg')))
    assert LoadImageFromFile(ignore_empty=True)(dict(img_path=str(tmp_path / 'x.png'))) is None


COCO = dict(
    images=[dict(id=1, file_name='a.png', width=100, height=50),
            dict(id=2, file_name='b.png', width=100, height=50)],
    categories=[dict(id=1, name='disc'), dict(id=3, name='square')],
    annotations=[dict(id=10, image_id=1, category_id=1, bbox=[10, 10, 20, 20]),
                 dict(id=11, image_id=1, category_id=3, bbox=[10, 10, 0, 20]),
                 dict(id=12, image_id=2, category_id=3, bbox=[150, 10, 20, 20]),
                 dict(id=13, image_id=2, category_id=1, bbox=[90, 40, 20, 20]),
                 dict(id=14, image_id=7, category_id=1, bbox=[1, 1, 5, 5])])


def test_coco_content_counts_what_the_loader_drops():
    counts = check_coco_content(copy.deepcopy(COCO), 'train.json')
    assert counts == dict(duplicate_image_ids=0, unknown_category=0, degenerate=1, outside=1,
                          partly_outside=1, unknown_image=1)
    clean = copy.deepcopy(COCO)
    clean['annotations'] = clean['annotations'][:1]
    assert not any(check_coco_content(clean, 'train.json').values())


def test_coco_duplicate_image_ids_and_unknown_categories_are_errors():
    dup = copy.deepcopy(COCO)
    dup['images'].append(dict(id=2, file_name='c.png', width=10, height=10))
    with pytest.raises(ValueError, match=r'train.json lists 1 image id\(s\) more than once '
                                         r'\(e.g. \[2\]\)'):
        check_coco_content(dup, 'train.json')
    unknown = copy.deepcopy(COCO)
    unknown['annotations'][0]['category_id'] = 5
    with pytest.raises(ValueError, match=r'category_id that is not in its `categories` \(\[5\]\)'):
        check_coco_content(unknown, 'train.json')


def test_coco_content_counts_zero_height_and_non_finite_boxes_as_degenerate():
    """Labeled boxes of zero height or with a NaN / infinite coordinate are counted as
    degenerate (the loader drops them), never as usable or partly-outside boxes."""
    coco = copy.deepcopy(COCO)
    coco['annotations'] = [
        dict(id=20, image_id=1, category_id=1, bbox=[10, 10, 20, 0]),
        dict(id=21, image_id=1, category_id=1, bbox=[float('nan'), 10, 20, 20]),
        dict(id=22, image_id=2, category_id=3, bbox=[5, 5, float('inf'), 5]),
        dict(id=23, image_id=2, category_id=3, bbox=[5, 5, 10, 10])]
    counts = check_coco_content(coco, 'train.json')
    assert counts == dict(duplicate_image_ids=0, unknown_category=0, degenerate=3, outside=0,
                          partly_outside=0, unknown_image=0)
