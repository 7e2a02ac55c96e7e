"""mmdet3d 1.x info files (KITTI camera boxes, nuScenes-style LiDAR boxes) read as ssl_det
frames. Camera boxes are made here by hand from chosen LiDAR boxes, not by ssl_det's code."""
import pickle
from collections import Counter

import numpy as np
import pytest

import ssl_det.datasets.mmdet3d_infos as infos_module
from ssl_det.datasets.mmdet3d_infos import (convert_mmdet3d_info, is_mmdet3d_info,
                                            mmdet3d_classes, mmdet3d_label_names,
                                            resolve_box_frame)
from ssl_det.datasets.point_cloud_dataset import PointCloudDataset
from ssl_det.datasets.point_cloud_io import PointCloudDataError
from ssl_det.datasets.transforms import loading_3d  # noqa: F401  (registers the transform)
from ssl_det.structures import points_in_boxes

# mmdet3d's KITTI categories (update_infos_to_v2 order) with DontCare ignored
KITTI_CATEGORIES = {'Pedestrian': 0, 'Cyclist': 1, 'Car': 2, 'Van': 3, 'Truck': 4,
                    'Person_sitting': 5, 'Tram': 6, 'Misc': 7, 'DontCare': -1}
CAR = np.array([14.0, -3.0, -0.9, 4.4, 1.9, 1.6, 2.8])
PED = np.array([7.0, 1.5, -0.85, 0.9, 0.5, 1.7, -0.7])
VAN = np.array([25.0, 6.0, -0.6, 5.2, 2.1, 2.2, 0.1])
DONTCARE_BOX = [-1000.0, -1000.0, -1000.0, -1.0, -1.0, -1.0, -10.0]


def _lidar2cam():
    """A KITTI-like LiDAR -> rectified camera map: axis permutation, a small rotation and a
    translation."""
    a, b = 0.015, 0.003
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]) @ \
        np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    mat = np.eye(4)
    mat[:3, :3] = rot @ np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])
    mat[:3, 3] = [0.02, -0.08, -0.27]
    return mat


def camera_box(box, lidar2cam):
    """mmdet3d KITTI ``bbox_3d`` (x, y, z bottom, l, h, w, ry) of a LiDAR box, by hand."""
    x, y, z, l, w, h, yaw = box
    centre = lidar2cam[:3, :3] @ [x, y, z] + lidar2cam[:3, 3]
    heading = lidar2cam[:3, :3] @ [np.cos(yaw), np.sin(yaw), 0]
    ry = np.arctan2(-heading[2], heading[0])
    return [centre[0], centre[1] + h / 2, centre[2], l, h, w, ry]


def inside_points(box, n, rng):
    x, y, z, l, w, h, yaw = box
    local = rng.uniform(-0.48, 0.48, (n, 3)) * [l, w, h]
    local[: n // 2, 0] = np.sign(local[: n // 2, 0]) * 0.48 * l  # the ends show yaw errors
    c, s = np.cos(yaw), np.sin(yaw)
    xyz = np.stack([c * local[:, 0] - s * local[:, 1] + x, s * local[:, 0] + c * local[:, 1] + y,
                    local[:, 2] + z], axis=1)
    return np.hstack([xyz, rng.uniform(0, 1, (n, 1))])


def kitti_mmdet3d_info(frame='000003'):
    lidar2cam = _lidar2cam()
    instances = [
        dict(bbox=[0, 0, 50, 50], bbox_label=2, bbox_3d=camera_box(CAR, lidar2cam),
             bbox_label_3d=2, difficulty=0, num_lidar_pts=80, truncated=0.0, occluded=0),
        dict(bbox=[0, 0, 5, 5], bbox_label=-1, bbox_3d=DONTCARE_BOX, bbox_label_3d=-1,
             difficulty=-1, num_lidar_pts=-1),
        dict(bbox=[0, 0, 30, 60], bbox_label=0, bbox_3d=camera_box(PED, lidar2cam),
             bbox_label_3d=0, difficulty=1, num_lidar_pts=40),
        dict(bbox=[0, 0, 30, 30], bbox_label=3, bbox_3d=camera_box(VAN, lidar2cam),
             bbox_label_3d=3, difficulty=2, num_lidar_pts=10)]
    return dict(
        sample_idx=int(frame),
        images=dict(CAM2=dict(img_path=f'{frame}.png', height=375, width=1242,
                              cam2img=np.eye(4).tolist(), lidar2cam=lidar2cam.tolist(),
                              lidar2img=lidar2cam.tolist())),
        lidar_points=dict(num_pts_feats=4, lidar_path=f'{frame}.bin',
                          Tr_velo_to_cam=lidar2cam.tolist()),
        instances=instances)


def _yaw_diff(a, b):
    return np.abs(np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b)))))


def test_convert_kitti_camera_boxes_to_lidar():
    ignored = Counter()
    names = mmdet3d_label_names(dict(categories=KITTI_CATEGORIES))
    out = convert_mmdet3d_info(kitti_mmdet3d_info(), names, 'camera', 'CAM2', 'k.pkl', ignored)
    assert ignored == Counter({'label -1': 1})
    assert out['frame_id'] == '000003' and out['sample_idx'] == 3
    assert out['lidar_path'] == '000003.bin' and out['num_point_features'] == 4
    assert [i['label_name'] for i in out['instances']] == ['Car', 'Pedestrian', 'Van']
    boxes = np.array([i['bbox_3d'] for i in out['instances']])
    assert np.allclose(boxes[:, :6], [CAR[:6], PED[:6], VAN[:6]], atol=1e-4)
    assert _yaw_diff(boxes[:, 6], [CAR[6], PED[6], VAN[6]]).max() < 1e-4
    assert [i['difficulty'] for i in out['instances']] == [0, 1, 2]
    assert [i['num_lidar_pts'] for i in out['instances']] == [80, 40, 10]
    assert np.allclose(out['calib']['lidar2cam'], _lidar2cam())
    assert mmdet3d_classes(dict(categories=KITTI_CATEGORIES))[:3] == ('Pedestrian', 'Cyclist',
                                                                      'Car')


def test_kitti_pkl_through_dataset_with_data_prefix(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    root = tmp_path / 'kitti'
    velo = root / 'training' / 'velodyne_reduced'
    velo.mkdir(parents=True)
    counts = [60, 30, 20]
    points = np.concatenate([inside_points(b, n, rng) for b, n in zip((CAR, PED, VAN), counts)])
    points.astype(np.float32).tofile(velo / '000003.bin')
    with open(root / 'kitti_infos_train.pkl', 'wb') as f:
        pickle.dump(dict(metainfo=dict(categories=KITTI_CATEGORIES, dataset='kitti',
                                       info_version='1.1'),
                         data_list=[kitti_mmdet3d_info()]), f)
    logged = []
    monkeypatch.setattr(infos_module, 'print_log', lambda msg, **kw: logged.append(msg))
    ds = PointCloudDataset('kitti_infos_train.pkl', data_root=str(root),
                           data_prefix=dict(pts='training/velodyne_reduced'),
                           pipeline=[dict(type='LoadPointsFromFile')])
    assert any('camera boxes' in m and "dataset 'kitti'" in m for m in logged)
    assert ds.metainfo['classes'][:3] == ('Pedestrian', 'Cyclist', 'Car')
    assert ds.metainfo['dataset'] == 'kitti'
    out = ds[0]
    assert out['lidar_path'] == str(velo / '000003.bin') and out['frame_id'] == '000003'
    assert out['gt_labels_3d'].tolist() == [2, 0, 3]  # DontCare removed
    assert np.allclose(out['gt_bboxes_3d'][:, :6], [CAR[:6], PED[:6], VAN[:6]], atol=1e-4)
    # the boxes hold their points: a missing h/2 shift or swapped l/w would lose some
    assert points_in_boxes(out['points'], out['gt_bboxes_3d']).sum(axis=0).tolist() == counts

    ds = PointCloudDataset(str(root / 'kitti_infos_train.pkl'),
                           data_prefix=dict(pts='training/velodyne_reduced'),
                           metainfo=dict(classes=('Car', 'Pedestrian', 'Cyclist')),
                           other_classes='drop', test_mode=True)
    info = ds.get_data_info(0)
    assert info['gt_labels_3d'].tolist() == [0, 1]  # the Van is dropped
    assert info['eval_ann_info']['gt_labels_3d'].tolist() == [0, 1]
    with pytest.raises(PointCloudDataError, match=r"frame 000003: box #2 has class 'Van'"):
        PointCloudDataset(str(root / 'kitti_infos_train.pkl'),
                          metainfo=dict(classes=('Car', 'Pedestrian', 'Cyclist')))


def test_lidar_frame_boxes_nuscenes_style():
    names = {0: 'car', 1: 'pedestrian'}
    info = dict(sample_idx=5, lidar_points=dict(num_pts_feats=5, lidar_path='samples/x.pcd.bin'),
                instances=[dict(bbox_3d=list(CAR) + [1.0, 2.0], bbox_label_3d=0,
                                velocity=[1.0, 2.0], num_lidar_pts=12)])
    out = convert_mmdet3d_info(info, names, 'lidar')
    assert np.allclose(out['instances'][0]['bbox_3d'], CAR)  # gravity centre: kept as is
    assert out['instances'][0]['difficulty'] == -1 and out['frame_id'] == 'x.pcd'
    assert 'calib' not in out
    out = convert_mmdet3d_info(info, names, 'lidar_bottom')
    expected = CAR.copy()
    expected[2] += CAR[5] / 2
    assert np.allclose(out['instances'][0]['bbox_3d'], expected)


def test_box_frame_decision_and_errors():
    assert resolve_box_frame('auto', dict(dataset='kitti')) == 'camera'
    assert resolve_box_frame('auto', dict(dataset='nuscenes')) == 'lidar'
    assert resolve_box_frame('camera', dict(dataset='waymo')) == 'camera'
    with pytest.raises(PointCloudDataError, match=r'w\.pkl.*Waymo.*set box_frame'):
        resolve_box_frame('auto', dict(dataset='waymo'), 'w.pkl')
    with pytest.raises(PointCloudDataError, match='set box_frame'):
        resolve_box_frame('auto', {}, 'x.pkl')
    info = kitti_mmdet3d_info()
    del info['images']['CAM2']['lidar2cam']
    with pytest.raises(PointCloudDataError, match=r"k\.pkl frame 000003: .*lidar2cam"):
        convert_mmdet3d_info(info, mmdet3d_label_names(dict(categories=KITTI_CATEGORIES)),
                             'camera', 'CAM2', 'k.pkl')
    with pytest.raises(PointCloudDataError, match='categories'):
        mmdet3d_label_names(dict(classes=['Car']), 'c.pkl')
    info = kitti_mmdet3d_info()
    info['instances'][0]['bbox_label_3d'] = 11
    with pytest.raises(PointCloudDataError, match='bbox_label_3d=11'):
        convert_mmdet3d_info(info, {2: 'Car'}, 'camera')
    assert is_mmdet3d_info(dict(metainfo=dict(categories={}), data_list=[]))
    assert is_mmdet3d_info(dict(metainfo={}, data_list=[kitti_mmdet3d_info()]))
    assert not is_mmdet3d_info(dict(metainfo=dict(classes=['Car']),
                                    data_list=[dict(frame_id='a', lidar_path='a.bin')]))
