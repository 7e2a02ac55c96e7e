"""PointCloudDataset over ssl_det info files, LoadPointsFromFile, and bad input."""
import json
import os.path as osp

import numpy as np
import pytest

import ssl_det.datasets.point_cloud_dataset as pcd_module
from ssl_det.datasets.point_cloud_dataset import PointCloudDataset
from ssl_det.datasets.unreadable import UnreadableDataError
from ssl_det.datasets.point_cloud_io import PointCloudDataError, dump_info_file, load_points
from ssl_det.datasets.transforms.loading_3d import LoadPointsFromFile
from ssl_det.registry import TRANSFORMS

CAR = [10.0, 2.0, -0.9, 4.0, 1.8, 1.6, 0.3]
PED = [6.0, -1.0, -0.8, 0.7, 0.6, 1.8, 1.2]
VAN = [20.0, 5.0, -0.7, 5.0, 2.0, 2.2, 0.0]


def _points(n=100, dim=4, seed=0):
    return np.random.default_rng(seed).uniform(-5, 5, (n, dim)).astype(np.float32)


def _inst(box, name, difficulty=None):
    inst = dict(bbox_3d=list(box), label_name=name)
    if difficulty is not None:
        inst['difficulty'] = difficulty
    return inst


def write_info(root, frames=None, classes=('Car', 'Pedestrian', 'Cyclist'), name='info.json',
               **meta):
    """Point files under ``root/points`` and an info file ``root/name``."""
    (root / 'points').mkdir(parents=True, exist_ok=True)
    if frames is None:
        frames = [dict(frame_id='a', instances=[_inst(CAR, 'Car', 0), _inst(PED, 'Pedestrian')],
                       calib=dict(lidar2cam=np.eye(4).tolist())),
                  dict(frame_id='b', instances=[])]
    for f in frames:
        f.setdefault('lidar_path', f'points/{f["frame_id"]}.bin')
        if not osp.isabs(f['lidar_path']) and not (root / f['lidar_path']).exists():
            _points(seed=len(f['frame_id'])).tofile(root / f['lidar_path'])
    dump_info_file(dict(metainfo=dict(classes=list(classes), point_dim=4, **meta),
                        data_list=frames), str(root / name))
    return str(root / name)


def test_frames_arrays_and_paths(tmp_path):
    ann = write_info(tmp_path)
    ds = PointCloudDataset(ann)
    assert len(ds) == 2 and ds.metainfo['classes'] == ('Car', 'Pedestrian', 'Cyclist')
    info = ds.get_data_info(0)
    assert info['lidar_path'] == str(tmp_path / 'points' / 'a.bin')
    assert info['frame_id'] == 'a' and info['sample_idx'] == 0
    assert info['num_point_features'] == 4
    assert info['gt_bboxes_3d'].dtype == np.float32 and info['gt_bboxes_3d'].shape == (2, 7)
    assert np.allclose(info['gt_bboxes_3d'], [CAR, PED])
    assert info['gt_labels_3d'].dtype == np.int64 and info['gt_labels_3d'].tolist() == [0, 1]
    assert info['gt_difficulty'].dtype == np.int64 and info['gt_difficulty'].tolist() == [0, -1]
    assert np.allclose(info['calib']['lidar2cam'], np.eye(4))
    assert 'eval_ann_info' not in info
    empty = ds.get_data_info(1)
    assert empty['gt_bboxes_3d'].shape == (0, 7) and empty['gt_labels_3d'].shape == (0,)


def test_metainfo_classes_select_and_order_with_drop_log(tmp_path, monkeypatch):
    frames = [dict(frame_id='a', instances=[_inst(CAR, 'Car'), _inst(PED, 'Pedestrian'),
                                            _inst(VAN, 'Van'), _inst(VAN, 'Van')]),
              dict(frame_id='b', instances=[_inst(VAN, 'Tram')])]
    ann = write_info(tmp_path, frames, classes=('Car', 'Pedestrian', 'Van', 'Tram'))
    logged = []
    monkeypatch.setattr(pcd_module, 'print_log', lambda msg, **kw: logged.append(msg))
    ds = PointCloudDataset(ann, metainfo=dict(classes=('Pedestrian', 'Car')),
                           other_classes='drop', filter_empty_gt=True)
    assert ds.metainfo['classes'] == ('Pedestrian', 'Car')
    assert len(ds) == 1  # frame b had only a Tram
    assert ds.get_data_info(0)['gt_labels_3d'].tolist() == [1, 0]
    drop_lines = [m for m in logged if "other_classes='drop'" in m]
    assert len(drop_lines) == 1
    assert 'dropped 3 boxes' in drop_lines[0] and 'Tram: 1' in drop_lines[0] \
        and 'Van: 2' in drop_lines[0]
    assert any('filter_empty_gt dropped 1 of 2 frames' in m for m in logged)


def test_unknown_class_error_names_file_frame_class_and_known(tmp_path):
    frames = [dict(frame_id='x7', instances=[_inst(CAR, 'Car'), _inst(VAN, 'Van')])]
    ann = write_info(tmp_path, frames, classes=('Car', 'Van'))
    with pytest.raises(PointCloudDataError) as err:
        PointCloudDataset(ann, metainfo=dict(classes=('Car', 'Pedestrian')))
    msg = str(err.value)
    assert ann in msg and 'frame x7' in msg and "'Van'" in msg
    assert "('Car', 'Pedestrian')" in msg and "other_classes='drop'" in msg


def test_test_mode_eval_ann_info_and_pipeline(tmp_path):
    ann = write_info(tmp_path)
    ds = PointCloudDataset(ann, test_mode=True,
                           pipeline=[dict(type='LoadPointsFromFile', use_dims=[0, 1, 2])])
    out = ds[0]
    ev = out['eval_ann_info']
    assert np.allclose(ev['gt_bboxes_3d'], [CAR, PED]) and ev['gt_labels_3d'].tolist() == [0, 1]
    assert ev['gt_difficulty'].tolist() == [0, -1]
    assert ev['gt_bboxes_3d'] is not out['gt_bboxes_3d']
    assert out['points'].dtype == np.float32 and out['points'].shape == (100, 3)
    assert np.array_equal(out['points'], _points(seed=1)[:, :3])
    assert out['num_point_features'] == 3
    assert out['lidar_aug_matrix'].dtype == np.float64
    assert np.array_equal(out['lidar_aug_matrix'], np.eye(4))


def test_data_root_data_prefix_and_point_dim(tmp_path):
    root = tmp_path / 'data'
    (root / 'training' / 'velo').mkdir(parents=True)
    _points(n=10, dim=5).tofile(root / 'training' / 'velo' / '000001.bin')
    frames = [dict(frame_id='000001', lidar_path='000001.bin', instances=[])]
    dump_info_file(dict(metainfo=dict(classes=['Car'], point_dim=5), data_list=frames),
                   str(root / 'infos.pkl'))
    ds = PointCloudDataset('infos.pkl', data_root=str(root),
                           data_prefix=dict(pts='training/velo'),
                           pipeline=[dict(type='LoadPointsFromFile')])
    info = ds.get_data_info(0)
    assert info['lidar_path'] == str(root / 'training' / 'velo' / '000001.bin')
    assert info['num_point_features'] == 5  # from metainfo.point_dim
    assert ds[0]['points'].shape == (10, 5)
    ds = PointCloudDataset(str(root / 'infos.pkl'), data_prefix=dict(pts='training/velo'),
                           point_dim=4)
    assert ds.get_data_info(0)['num_point_features'] == 4


def test_bad_bin_size_and_nan_name_file_and_frame(tmp_path):
    ann = write_info(tmp_path)
    ds = PointCloudDataset(ann, pipeline=[dict(type='LoadPointsFromFile')])
    np.zeros(4 * 3 + 1, np.float32).tofile(tmp_path / 'points' / 'a.bin')  # 13 values
    with pytest.raises(PointCloudDataError, match=r'a\.bin \(frame a\).*not a whole number'):
        ds[0]
    pts = _points()
    pts[5, 1] = np.nan
    pts.tofile(tmp_path / 'points' / 'a.bin')
    with pytest.raises(PointCloudDataError, match=r'a\.bin \(frame a\): 1 of 100 points.*NaN'):
        ds[0]
    ds = PointCloudDataset(ann, pipeline=[dict(type='LoadPointsFromFile',
                                               check_finite=False)])
    assert np.isnan(ds[0]['points'][5, 1])


def test_non_positive_or_nan_box_names_file_and_frame(tmp_path):
    bad = list(CAR)
    bad[4] = 0.0
    ann = write_info(tmp_path, [dict(frame_id='f3', instances=[_inst(bad, 'Car')])])
    with pytest.raises(ValueError, match=r'non-positive size.*info\.json frame f3'):
        PointCloudDataset(ann)
    bad[4], bad[0] = 1.0, float('nan')
    ann = write_info(tmp_path, [dict(frame_id='f4', instances=[_inst(bad, 'Car')])])
    with pytest.raises(ValueError, match=r'NaN.*info\.json frame f4'):
        PointCloudDataset(ann)


def test_empty_data_list_and_bad_files(tmp_path):
    ann = tmp_path / 'empty.json'
    ann.write_text(json.dumps(dict(metainfo=dict(classes=['Car']), data_list=[])))
    with pytest.raises(PointCloudDataError, match=r'empty\.json has an empty data_list'):
        PointCloudDataset(str(ann))
    with pytest.raises(PointCloudDataError, match='info file not found'):
        PointCloudDataset(str(tmp_path / 'nope.json'))
    ann = write_info(tmp_path, name='noclass.json', classes=())
    with pytest.raises(PointCloudDataError, match='no class names'):
        PointCloudDataset(ann)
    ann = write_info(tmp_path, name='conv.json', box_convention='mmdet3d_lidar')
    with pytest.raises(PointCloudDataError, match="box_convention is 'mmdet3d_lidar'"):
        PointCloudDataset(ann)
    with pytest.raises(ValueError, match='other_classes'):
        PointCloudDataset(ann, other_classes='ignore')


def test_filter_empty_gt_leaving_nothing_is_an_error(tmp_path):
    ann = write_info(tmp_path, [dict(frame_id='e', instances=[])])
    with pytest.raises(PointCloudDataError, match='filter_empty_gt=True leaves nothing'):
        PointCloudDataset(ann, filter_empty_gt=True)
    assert len(PointCloudDataset(ann, filter_empty_gt=True, test_mode=True)) == 1


def test_pcd_and_ply_via_open3d(tmp_path):
    o3d = pytest.importorskip('open3d')
    xyz = _points(n=50, dim=3, seed=3)
    intensity = np.linspace(0, 1, 50, dtype=np.float32).reshape(-1, 1)
    cloud = o3d.t.geometry.PointCloud()
    cloud.point['positions'] = o3d.core.Tensor(xyz)
    cloud.point['intensity'] = o3d.core.Tensor(intensity)
    o3d.t.io.write_point_cloud(str(tmp_path / 'a.pcd'), cloud)
    legacy = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz.astype(np.float64)))
    o3d.io.write_point_cloud(str(tmp_path / 'b.ply'), legacy)

    load = TRANSFORMS.build(dict(type='LoadPointsFromFile'))
    out = load(dict(lidar_path=str(tmp_path / 'a.pcd'), frame_id='a', num_point_features=4))
    assert out['points'].shape == (50, 4) and out['points'].dtype == np.float32
    assert np.allclose(out['points'][:, :3], xyz, atol=1e-6)
    assert np.allclose(out['points'][:, 3], intensity[:, 0], atol=1e-6)
    out = load(dict(lidar_path=str(tmp_path / 'b.ply'), frame_id='b', num_point_features=4))
    assert np.allclose(out['points'][:, :3], xyz, atol=1e-6)
    assert np.array_equal(out['points'][:, 3], np.zeros(50))  # no intensity in the file
    assert np.allclose(load_points(str(tmp_path / 'b.ply'), 3), xyz, atol=1e-6)


def test_load_points_transform_arguments(tmp_path):
    _points(n=7, dim=5).tofile(tmp_path / 'p.bin')
    res = LoadPointsFromFile(point_dim=5, use_dims=[0, 1, 2, 4])(
        dict(lidar_path=str(tmp_path / 'p.bin'), frame_id='p'))
    assert np.array_equal(res['points'], _points(n=7, dim=5)[:, [0, 1, 2, 4]])
    with pytest.raises(PointCloudDataError, match=r'p\.bin \(frame p\).*point_dim'):
        LoadPointsFromFile()(dict(lidar_path=str(tmp_path / 'p.bin'), frame_id='p'))
    with pytest.raises(ValueError, match='start with 0, 1, 2'):
        LoadPointsFromFile(use_dims=[1, 0, 2])
    with pytest.raises(PointCloudDataError, match='use_dims'):
        LoadPointsFromFile(use_dims=[0, 1, 2, 5])(
            dict(lidar_path=str(tmp_path / 'p.bin'), frame_id='p', num_point_features=5))


def test_unreadable_frames_skipped_in_unlabeled_pool_error_in_labeled(tmp_path):
    frames = [dict(frame_id=f, instances=[]) for f in ('a', 'b', 'c')]
    ann = write_info(tmp_path, frames=frames, unlabeled=True)
    pipeline = [dict(type='LoadPointsFromFile'),
                dict(type='PackPointCloudInputs', meta_keys=('frame_id',))]
    (tmp_path / 'points' / 'a.bin').unlink()
    np.zeros(13, np.float32).tofile(tmp_path / 'points' / 'b.bin')  # cut short
    pool = PointCloudDataset(ann, pipeline=pipeline)
    assert pool.unlabeled and pool.skips_unreadable()
    data = pool[0]  # a missing, b broken: c instead, with both recorded
    assert data['data_samples'].metainfo['frame_id'] == 'c'
    skipped = data['data_samples'].metainfo['skipped_unreadable']
    assert len(skipped) == 2 and 'a.bin' in skipped[0] and 'not found' in skipped[0]
    assert 'b.bin' in skipped[1]
    # one token per draw (DataCheckHook counts a draw once, whatever its views): another
    # draw of the same frame has its own
    token = data['data_samples'].metainfo['skipped_unreadable_token']
    assert token and token != pool[0]['data_samples'].metainfo['skipped_unreadable_token']
    assert 'skipped_unreadable' not in pool[2]['data_samples'].metainfo
    labeled = PointCloudDataset(ann, pipeline=pipeline, unreadable='error')
    with pytest.raises(UnreadableDataError, match=r'a\.bin.*labeled data.*unreadable="skip"'):
        labeled[0]


def test_class_balanced_dataset_repeats_the_frames_of_a_rare_class(tmp_path):
    """get_cat_ids gives each frame's classes, so mmengine's ClassBalancedDataset repeats the
    frames of a rare class: Cyclist in 1 of 4 frames, oversample_thr 0.75, repeat factor
    sqrt(0.75 / 0.25) rounded up to 2; Car (in 3 of 4 frames) and the empty frame once."""
    from mmengine.dataset import ClassBalancedDataset
    frames = [dict(frame_id=str(i), instances=[_inst(CAR, 'Car')]) for i in range(3)]
    frames[1]['instances'].append(_inst(PED, 'Cyclist'))
    frames.append(dict(frame_id='3', instances=[]))
    ds = PointCloudDataset(write_info(tmp_path, frames))
    assert [ds.get_cat_ids(i) for i in range(4)] == [[0], [0, 2], [0], []]
    balanced = ClassBalancedDataset(ds, oversample_thr=0.75)
    drawn = sorted(balanced.get_data_info(i)['frame_id'] for i in range(len(balanced)))
    assert drawn == ['0', '1', '1', '2', '3']


def test_point_dim_overrides_the_frames_and_the_frames_override_metainfo(tmp_path):
    """Values per point: the dataset's ``point_dim`` first, then the frame's
    ``num_point_features``, then ``metainfo.point_dim``: a frame that says 4 of a file
    holding 10 points of 5 values loads as (10, 5) with ``point_dim=5``, and a frame that
    says 5 wins over ``metainfo.point_dim=4``."""
    (tmp_path / 'points').mkdir()
    points = _points(n=10, dim=5)
    points.tofile(tmp_path / 'points' / 'a.bin')
    frame = dict(frame_id='a', lidar_path='points/a.bin', instances=[])
    pipeline = [dict(type='LoadPointsFromFile')]
    ann = write_info(tmp_path, [dict(frame, num_point_features=4)])  # metainfo point_dim 4
    ds = PointCloudDataset(ann, point_dim=5, pipeline=pipeline)
    assert ds.get_data_info(0)['num_point_features'] == 5
    assert np.array_equal(ds[0]['points'], points)
    ann = write_info(tmp_path, [dict(frame, num_point_features=5)], name='frame.json')
    ds = PointCloudDataset(ann, pipeline=pipeline)
    assert ds.get_data_info(0)['num_point_features'] == 5
    assert np.array_equal(ds[0]['points'], points)
