"""check_semi_split: catches the category mismatch that silently zeroes unsupervised losses."""
import json

import pytest

from ssl_det.datasets import SemiSplitSummary, check_semi_split

CATS = [dict(id=1, name='person'), dict(id=3, name='car')]


def _write(path, images=2, annotations=1, categories=CATS):
    coco = dict(images=[dict(id=i, file_name=f'{path.stem}_{i}.jpg', width=8, height=6)
                        for i in range(images)],
                annotations=[dict(id=i, image_id=0, category_id=1, bbox=[0, 0, 2, 2])
                             for i in range(annotations)],
                categories=categories)
    path.write_text(json.dumps(coco))
    return str(path)


def test_summary(tmp_path):
    labeled = _write(tmp_path / 'lab.json', images=3, annotations=5)
    unlabeled = _write(tmp_path / 'unl.json', images=7, annotations=0,
                       categories=list(reversed(CATS)))  # order does not matter
    summary = check_semi_split(labeled, unlabeled)
    assert summary == SemiSplitSummary(num_labeled_images=3, num_unlabeled_images=7,
                                       num_labeled_annotations=5,
                                       categories=[(1, 'person'), (3, 'car')],
                                       num_shared_images=0)


def test_shared_images_are_counted(tmp_path):
    labeled = _write(tmp_path / 'a.json', images=3)
    unlabeled = tmp_path / 'b.json'
    coco = json.loads(open(labeled).read())
    coco['images'].append(dict(id=9, file_name='other.jpg'))
    unlabeled.write_text(json.dumps(coco))
    assert check_semi_split(labeled, str(unlabeled)).num_shared_images == 3


def test_different_categories_name_files_ids_and_names(tmp_path):
    labeled = _write(tmp_path / 'lab.json')
    unlabeled = _write(tmp_path / 'unl.json', categories=[
        dict(id=1, name='pedestrian'), dict(id=3, name='car'), dict(id=7, name='bus')])
    with pytest.raises(ValueError) as err:
        check_semi_split(labeled, unlabeled)
    msg = str(err.value)
    assert labeled in msg and unlabeled in msg
    assert "only in unlabeled: 7='bus'" in msg
    assert "1: 'person' vs 'pedestrian'" in msg
    unlabeled = _write(tmp_path / 'unl2.json', categories=CATS[:1])
    with pytest.raises(ValueError, match="only in labeled: 3='car'"):
        check_semi_split(labeled, unlabeled)


def test_missing_file_and_empty_split(tmp_path):
    labeled = _write(tmp_path / 'lab.json')
    missing = str(tmp_path / 'nope.json')
    with pytest.raises(FileNotFoundError, match='nope.json'):
        check_semi_split(labeled, missing)
    empty = _write(tmp_path / 'empty.json', images=0)
    with pytest.raises(ValueError, match=r'The unlabeled file .*empty\.json has no images'):
        check_semi_split(labeled, empty)
    with pytest.raises(ValueError, match=r'The labeled file .*empty\.json has no images'):
        check_semi_split(empty, labeled)
    no_cats = _write(tmp_path / 'nocats.json', categories=[])
    with pytest.raises(ValueError, match=r'nocats\.json has no `categories`'):
        check_semi_split(labeled, no_cats)
    broken = tmp_path / 'broken.json'
    broken.write_text('{"images": [')
    with pytest.raises(ValueError, match=r'broken\.json is not valid JSON'):
        check_semi_split(str(broken), labeled)
