import hashlib
import json
import os.path as osp

import pytest

from ssl_det.datasets.coco_split import split_coco
from tools.misc import split_coco as split_tool


def _coco(path, num_images=37, num_cats=3):
    data = dict(
        info=dict(description='t'),
        images=[dict(id=i + 10, file_name=f'{i}.png', width=8, height=8)
                for i in range(num_images)],
        annotations=[dict(id=i, image_id=i + 10, category_id=1 + i % num_cats,
                          bbox=[0, 0, 2, 2], area=4, iscrowd=0) for i in range(num_images)],
        categories=[dict(id=c + 1, name=f'c{c}') for c in range(num_cats)])
    with open(path, 'w') as f:
        json.dump(data, f)
    return data


def _sha(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def test_exact_counts_disjoint_cover_and_names(tmp_path):
    src = tmp_path / 'instances_train.json'
    data = _coco(src)
    before = _sha(src)
    out = tmp_path / 'splits'
    written = split_coco(str(src), [10, 25, 50, 5.5], folds=2, out_dir=str(out), seed=0)
    assert len(written) == 8
    all_ids = {img['id'] for img in data['images']}
    for (labeled, unlabeled), (fold, pct) in zip(
            written, [(f, p) for f in (1, 2) for p in (10, 25, 50, 5.5)]):
        assert labeled == str(out / f'instances_train.{fold}@{pct:g}.json')
        assert unlabeled == str(out / f'instances_train.{fold}@{pct:g}-unlabeled.json')
        lab, unl = json.load(open(labeled)), json.load(open(unlabeled))
        lab_ids = {img['id'] for img in lab['images']}
        unl_ids = {img['id'] for img in unl['images']}
        expected = int(37 * pct / 100 + 0.5)  # round half up
        assert len(lab['images']) == len(lab_ids) == expected
        assert not lab_ids & unl_ids and lab_ids | unl_ids == all_ids
        assert {a['image_id'] for a in lab['annotations']} == lab_ids
        assert unl['annotations'] == []
        assert lab['categories'] == unl['categories'] == data['categories']
    assert _sha(src) == before


def test_rounding_and_fractional_percent(tmp_path):
    src = tmp_path / 'a.json'
    _coco(src, num_images=200)
    (lab, _), = split_coco(str(src), [0.5], folds=1, out_dir=str(tmp_path / 'o'))
    assert lab.endswith('a.1@0.5.json')
    assert len(json.load(open(lab))['images']) == 1
    (lab, _), = split_coco(str(src), [2.25], folds=1, out_dir=str(tmp_path / 'o'))
    assert len(json.load(open(lab))['images']) == 5  # 4.5 rounds half up


def test_rerun_is_identical_and_seed_matters(tmp_path):
    src = tmp_path / 'a.json'
    _coco(src)
    first = split_coco(str(src), [10, 20], folds=3, out_dir=str(tmp_path / 'o'), seed=4)
    hashes = [_sha(p) for pair in first for p in pair]
    again = split_coco(str(src), [10, 20], folds=3, out_dir=str(tmp_path / 'o'), seed=4)
    assert [_sha(p) for pair in again for p in pair] == hashes
    other = split_coco(str(src), [10], folds=1, out_dir=str(tmp_path / 'p'), seed=5)
    assert _sha(other[0][0]) != hashes[0]
    # folds differ from each other
    assert hashes[0] != hashes[4]


def test_nested_within_fold(tmp_path):
    src = tmp_path / 'a.json'
    _coco(src, num_images=100)
    (small, _), (large, _) = split_coco(str(src), [5, 20], folds=1, out_dir=str(tmp_path))
    ids = lambda p: {i['id'] for i in json.load(open(p))['images']}  # noqa: E731
    assert ids(small) < ids(large)


@pytest.mark.parametrize('pct', [0, -1, 100, 150])
def test_bad_percentage_is_a_clear_error(tmp_path, pct):
    src = tmp_path / 'a.json'
    _coco(src)
    with pytest.raises(ValueError, match='percent must be in'):
        split_coco(str(src), [pct], folds=1, out_dir=str(tmp_path))


def test_percentage_leaving_an_empty_split(tmp_path):
    src = tmp_path / 'a.json'
    _coco(src, num_images=10)
    with pytest.raises(ValueError, match='labeled split empty'):
        split_coco(str(src), [1], folds=1, out_dir=str(tmp_path))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.json'):
        split_coco(str(tmp_path / 'nope.json'), [10], folds=1, out_dir=str(tmp_path))
    empty = tmp_path / 'empty.json'
    empty.write_text(json.dumps(dict(images=[], annotations=[], categories=[])))
    with pytest.raises(ValueError, match='empty.json has no images'):
        split_coco(str(empty), [10], folds=1, out_dir=str(tmp_path))


def test_input_untouched_when_writing_beside_it(tmp_path):
    src = tmp_path / 'a.1@10.json'  # looks like a split already
    _coco(src)
    before = _sha(src)
    written = split_coco(str(src), [10], folds=1, out_dir=str(tmp_path))
    assert _sha(src) == before
    assert str(src) not in written[0]


def test_cli(tmp_path, capsys):
    src = tmp_path / 'a.json'
    _coco(src)
    split_tool.main([str(src), '--percent', '10', '--folds', '2', '--out-dir',
                     str(tmp_path / 'o')])
    assert osp.isfile(tmp_path / 'o' / 'a.2@10-unlabeled.json')
    with pytest.raises(SystemExit, match='percent must be in'):
        split_tool.main([str(src), '--percent', '0', '--out-dir', str(tmp_path / 'o')])


def test_cli_passes_folds_and_seed(tmp_path):
    """split_coco.py's --folds and --seed reach the split: the CLI writes what the library
    writes with the same arguments, every fold of it."""
    src = tmp_path / 'a.json'
    _coco(src)
    split_tool.main([str(src), '--percent', '20', '--folds', '2', '--seed', '7', '--out-dir',
                     str(tmp_path / 'cli')])
    expected = split_coco(str(src), [20], folds=2, out_dir=str(tmp_path / 'lib'), seed=7)
    assert len(expected) == 2
    for labeled, unlabeled in expected:
        for path in (labeled, unlabeled):
            cli = tmp_path / 'cli' / osp.basename(path)
            assert cli.is_file() and _sha(cli) == _sha(path), path
