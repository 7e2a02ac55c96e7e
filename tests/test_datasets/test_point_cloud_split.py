import hashlib
import os.path as osp
import pickle

import numpy as np
import pytest

from ssl_det.datasets.point_cloud_io import (dump_info_file, load_info_file, load_points,
                                             resolve_path, save_points)
from ssl_det.datasets.point_cloud_split import split_point_cloud
from tools.misc import split_point_cloud as split_tool


def _info(root, num_frames=37, name='train.json', absolute_every=0):
    """An info file in ``root`` whose frames' points lie in ``root/points``; every
    ``absolute_every``-th frame (when > 0) has an absolute path."""
    frames = []
    for i in range(num_frames):
        path = f'points/{i:06d}.bin'
        save_points(osp.join(root, path), np.full((i + 1, 4), i, np.float32))
        if absolute_every and i % absolute_every == 0:
            path = osp.join(str(root), path)
        frames.append(dict(
            frame_id=f'{i:06d}', lidar_path=path, num_point_features=4,
            instances=[dict(bbox_3d=[i, 0, -1, 4, 2, 1.5, 0], label_name='Car',
                            num_lidar_pts=i)],
            cam_instances=[dict(bbox=[0, 0, 1, 1])], annos=dict(name=['Car']),
            calib=dict(lidar2cam=np.eye(4).tolist())))
    info = dict(metainfo=dict(classes=['Car', 'Pedestrian', 'Cyclist'], point_dim=4),
                data_list=frames)
    path = osp.join(root, name)
    dump_info_file(info, path)
    return path, info


def _sha(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def _ids(path):
    return [f['frame_id'] for f in load_info_file(path)['data_list']]


def test_exact_counts_disjoint_cover_labels_and_names(tmp_path):
    src, info = _info(tmp_path)
    before = _sha(src)
    out = tmp_path / 'semi_anns'
    written = split_point_cloud(src, [10, 25, 50, 5.5], folds=2, out_dir=str(out), seed=0)
    assert len(written) == 8
    all_ids = {f['frame_id'] for f in info['data_list']}
    by_id = {f['frame_id']: f for f in info['data_list']}
    for (labeled, unlabeled), (fold, pct) in zip(
            written, [(f, p) for f in (1, 2) for p in (10, 25, 50, 5.5)]):
        assert labeled == str(out / f'train.{fold}@{pct:g}.json')
        assert unlabeled == str(out / f'train.{fold}@{pct:g}-unlabeled.json')
        lab, unl = load_info_file(labeled), load_info_file(unlabeled)
        lab_ids, unl_ids = set(_ids(labeled)), set(_ids(unlabeled))
        assert len(lab['data_list']) == len(lab_ids) == int(37 * pct / 100 + 0.5)
        assert not lab_ids & unl_ids and lab_ids | unl_ids == all_ids
        # labeled frames keep every field; unlabeled ones lose every label field
        for frame in lab['data_list']:
            src_frame = by_id[frame['frame_id']]
            assert frame['instances'] == src_frame['instances']
            assert frame['cam_instances'] == src_frame['cam_instances']
        for frame in unl['data_list']:
            assert frame['instances'] == []
            assert 'cam_instances' not in frame and 'annos' not in frame
            assert frame['calib'] == by_id[frame['frame_id']]['calib']
        assert unl['metainfo'] == dict(info['metainfo'], unlabeled=True)
        assert lab['metainfo'] == info['metainfo']
        # frames keep the input's order
        order = [f['frame_id'] for f in info['data_list']]
        assert _ids(labeled) == [i for i in order if i in lab_ids]
    assert _sha(src) == before


def test_paths_resolve_from_the_new_folder(tmp_path):
    src, info = _info(tmp_path / 'data', num_frames=20, absolute_every=3)
    out = tmp_path / 'elsewhere' / 'deeper'
    written = split_point_cloud(src, [25], folds=1, out_dir=str(out))
    expected = {f['frame_id']: load_points(resolve_path(f['lidar_path'], src))
                for f in info['data_list']}
    absolute = {f['frame_id'] for f in info['data_list'] if osp.isabs(f['lidar_path'])}
    for path in written[0]:
        for frame in load_info_file(path)['data_list']:
            assert osp.isabs(frame['lidar_path']) == (frame['frame_id'] in absolute)
            points = load_points(resolve_path(frame['lidar_path'], path))
            np.testing.assert_array_equal(points, expected[frame['frame_id']])


def test_data_root_paths_are_kept(tmp_path):
    src, info = _info(tmp_path, num_frames=10)
    (labeled, _), = split_point_cloud(src, [50], folds=1, out_dir=str(tmp_path / 'o'),
                                      data_root=str(tmp_path))
    for frame in load_info_file(labeled)['data_list']:
        assert frame['lidar_path'] == f'points/{frame["frame_id"]}.bin'
        assert osp.isfile(resolve_path(frame['lidar_path'], labeled, str(tmp_path)))


def test_rerun_identical_seed_and_folds_matter_nested(tmp_path):
    src, _ = _info(tmp_path, num_frames=100)
    first = split_point_cloud(src, [5, 20], folds=3, out_dir=str(tmp_path / 'o'), seed=4)
    hashes = [_sha(p) for pair in first for p in pair]
    again = split_point_cloud(src, [5, 20], folds=3, out_dir=str(tmp_path / 'o'), seed=4)
    assert [_sha(p) for pair in again for p in pair] == hashes
    other = split_point_cloud(src, [5], folds=1, out_dir=str(tmp_path / 'p'), seed=5)
    assert _sha(other[0][0]) != hashes[0]
    assert set(_ids(first[0][0])) != set(_ids(first[2][0]))  # fold 1 vs fold 2
    assert set(_ids(first[0][0])) < set(_ids(first[1][0]))  # 5% within 20%


def test_pkl_in_pkl_out(tmp_path):
    _, info = _info(tmp_path, num_frames=10)
    src = str(tmp_path / 'train.pkl')
    with open(src, 'wb') as f:
        pickle.dump(info, f)
    (labeled, unlabeled), = split_point_cloud(src, [30], folds=1, out_dir=str(tmp_path / 'o'))
    assert labeled.endswith('train.1@30.pkl') and unlabeled.endswith('train.1@30-unlabeled.pkl')
    assert len(load_info_file(labeled)['data_list']) == 3


@pytest.mark.parametrize('pct', [0, -1, 100, 150])
def test_bad_percentage_is_a_clear_error(tmp_path, pct):
    src, _ = _info(tmp_path, num_frames=10)
    with pytest.raises(ValueError, match='percent must be in'):
        split_point_cloud(src, [pct], folds=1, out_dir=str(tmp_path))


def test_bad_inputs_are_clear_errors(tmp_path):
    src, info = _info(tmp_path, num_frames=10)
    with pytest.raises(ValueError, match=r'train.json: 1% of 10 frames leaves the labeled'):
        split_point_cloud(src, [1], folds=1, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match='nope.json'):
        split_point_cloud(str(tmp_path / 'nope.json'), [10], folds=1, out_dir=str(tmp_path))
    cases = {
        'empty.json': dict(metainfo={}, data_list=[]),
        'dup.json': dict(metainfo={}, data_list=info['data_list'][:2] * 2),
        'unl.json': dict(metainfo=dict(unlabeled=True), data_list=info['data_list']),
        'noid.json': dict(metainfo={}, data_list=[dict(lidar_path='points/000000.bin')]),
    }
    messages = dict(zip(cases, ['has no frames', "duplicate frame_id '000000'",
                                'is an unlabeled split', r'data_list\[0\] needs "frame_id"']))
    for name, data in cases.items():
        dump_info_file(data, str(tmp_path / name))
        with pytest.raises(ValueError, match=f'{name}.*{messages[name]}'):
            split_point_cloud(str(tmp_path / name), [50], folds=1, out_dir=str(tmp_path / 'o'))


def test_input_untouched_when_writing_beside_it(tmp_path):
    src, _ = _info(tmp_path, num_frames=20, name='train.1@10.json')  # looks like a split
    before = _sha(src)
    written = split_point_cloud(src, [10], folds=1, out_dir=str(tmp_path))
    assert _sha(src) == before and src not in written[0]


def test_cli(tmp_path, capsys):
    src, _ = _info(tmp_path, num_frames=50)
    split_tool.main([src, '--percent', '1', '10', '--folds', '1', '--out-dir',
                     str(tmp_path / 'o')])
    assert osp.isfile(tmp_path / 'o' / 'train.1@10-unlabeled.json')
    assert str(tmp_path / 'o' / 'train.1@1.json') in capsys.readouterr().out
    assert len(_ids(str(tmp_path / 'o' / 'train.1@1.json'))) == 1  # 0.5 rounds up
    with pytest.raises(SystemExit, match='percent must be in'):
        split_tool.main([src, '--percent', '0', '--out-dir', str(tmp_path / 'o')])


def test_missing_point_files_are_reported(tmp_path, monkeypatch):
    # mmengine's logger keeps the stream it was created with, so capture at print_log
    import ssl_det.datasets.point_cloud_split as split_module
    logged = []
    monkeypatch.setattr(split_module, 'print_log', lambda msg, **kw: logged.append(msg))
    src, _ = _info(tmp_path, num_frames=10)
    for i in (2, 5):
        (tmp_path / 'points' / f'{i:06d}.bin').unlink()
    split_point_cloud(src, [50], folds=1, out_dir=str(tmp_path / 'o'))
    assert any('2 of 10 point files' in m for m in logged)


def test_cli_passes_folds_seed_and_data_root(tmp_path, capsys):
    """split_point_cloud.py's --folds, --seed and --data-root reach the split: the CLI writes
    what the library writes with the same arguments, every fold of it."""
    src, _ = _info(tmp_path, num_frames=20)
    split_tool.main([src, '--percent', '25', '--folds', '2', '--seed', '7', '--data-root',
                     str(tmp_path), '--out-dir', str(tmp_path / 'cli')])
    expected = split_point_cloud(src, [25], folds=2, out_dir=str(tmp_path / 'lib'), seed=7,
                                 data_root=str(tmp_path))
    assert len(expected) == 2
    for labeled, unlabeled in expected:
        for path in (labeled, unlabeled):
            cli = str(tmp_path / 'cli' / osp.basename(path))
            assert osp.isfile(cli) and _sha(cli) == _sha(path), path
