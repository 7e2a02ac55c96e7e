"""KITTI -> ssl_det conversion, checked against geometry written here by hand (not against
``camera_to_lidar``): objects are placed as LiDAR boxes, their points generated in the LiDAR
frame, and their KITTI label lines derived through a realistic (non-ideal) calibration."""
import json
import os.path as osp
import runpy
import sys

import numpy as np
import pytest

from ssl_det.datasets.kitti import (convert_kitti, kitti_difficulty, parse_kitti_calib,
                                    parse_kitti_label)
from ssl_det.datasets.point_cloud_dataset import PointCloudDataset
from ssl_det.datasets.point_cloud_io import PointCloudDataError
from ssl_det.datasets.transforms import loading_3d  # noqa: F401  (registers the transform)
from ssl_det.structures import points_in_boxes
from tools.dataset_converters import kitti_to_ssl_det

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# LiDAR boxes (x, y, z centre, l, w, h, yaw) and their label fields
CAR = np.array([12.0, 3.0, -0.95, 4.2, 1.8, 1.5, 0.5])
PED = np.array([8.0, -2.5, -0.85, 0.8, 0.6, 1.7, -2.4])
P2 = np.array([[721.5377, 0.0, 609.5593, 44.85728],
               [0.0, 721.5377, 172.854, 0.2163791],
               [0.0, 0.0, 1.0, 0.002745884]])


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return {'x': np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            'y': np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            'z': np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def kitti_like_calib():
    """KITTI-like ``Tr_velo_to_cam`` (axis permutation, a little rotation, a translation) and a
    non-identity ``R0_rect``; tilts are small (as in KITTI) so upright boxes stay upright."""
    perm = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])
    tr = np.hstack([_rot('y', 0.02) @ _rot('x', 0.002) @ _rot('z', -0.0015) @ perm,
                    [[0.004], [-0.076], [-0.272]]])
    r0 = _rot('y', 0.0098) @ _rot('x', -0.0016) @ _rot('z', 0.0012)
    lidar2cam = np.eye(4)
    lidar2cam[:3, :3] = r0 @ tr[:, :3]
    lidar2cam[:3, 3] = r0 @ tr[:, 3]
    return tr, r0, lidar2cam


def box_surface_points(box, n, rng):
    """``n`` points on the faces of a LiDAR box (2% inside), plus intensity."""
    x, y, z, l, w, h, yaw = box
    local = rng.uniform(-0.49, 0.49, (n, 3))
    face = rng.integers(0, 3, n)
    local[np.arange(n), face] = np.where(rng.random(n) < 0.5, -0.49, 0.49)
    local *= [l, w, h]
    c, s = np.cos(yaw), np.sin(yaw)
    world = np.stack([c * local[:, 0] - s * local[:, 1] + x,
                      s * local[:, 0] + c * local[:, 1] + y, local[:, 2] + z], axis=1)
    return np.hstack([world, rng.uniform(0, 1, (n, 1))])


def kitti_label_line(name, box, lidar2cam, truncated, occluded):
    """A KITTI label line for a LiDAR box, by hand: bottom centre and heading through the
    calibration, ry measured about camera y (x right, y down, z forward)."""
    x, y, z, l, w, h, yaw = box
    centre_cam = lidar2cam[:3, :3] @ [x, y, z] + lidar2cam[:3, 3]
    bottom_cam = centre_cam + [0.0, h / 2, 0.0]  # camera y points down
    heading_cam = lidar2cam[:3, :3] @ [np.cos(yaw), np.sin(yaw), 0.0]
    ry = np.arctan2(-heading_cam[2], heading_cam[0])
    corners = np.array([[sx * l / 2, sy * w / 2, sz * h / 2] for sx in (-1, 1)
                        for sy in (-1, 1) for sz in (-1, 1)])
    c, s = np.cos(yaw), np.sin(yaw)
    corners = corners @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) + [x, y, z]
    cam = corners @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]
    uvw = np.hstack([cam, np.ones((8, 1))]) @ P2.T
    uv = uvw[:, :2] / uvw[:, 2:]
    x1, y1 = uv.min(axis=0)
    x2, y2 = uv.max(axis=0)
    alpha = ry - np.arctan2(bottom_cam[0], bottom_cam[2])
    return (f'{name} {truncated:.2f} {occluded} {alpha:.6f} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f} '
            f'{h:.6f} {w:.6f} {l:.6f} {bottom_cam[0]:.6f} {bottom_cam[1]:.6f} '
            f'{bottom_cam[2]:.6f} {ry:.6f}')


def _matrix_line(key, mat):
    return f'{key}: ' + ' '.join(f'{v:.12e}' for v in np.asarray(mat).reshape(-1))


def write_kitti_frame(root, frame_id='000000', seed=0, objects=None):
    """One KITTI training frame; returns ``{'boxes', 'counts', 'points', 'lidar2cam'}``."""
    rng = np.random.default_rng(seed)
    tr, r0, lidar2cam = kitti_like_calib()
    objects = objects or [('Car', CAR, 0.0, 0, 150), ('Pedestrian', PED, 0.1, 1, 60)]
    pieces = [box_surface_points(box, n, rng) for _, box, _, _, n in objects]
    ground = np.stack([rng.uniform(2, 40, 500), rng.uniform(-15, 15, 500),
                       np.full(500, -1.8), rng.uniform(0, 1, 500)], axis=1)
    points = np.concatenate(pieces + [ground]).astype(np.float32)
    training = osp.join(root, 'training')
    for sub in ('velodyne', 'calib', 'label_2'):
        (root / 'training' / sub).mkdir(parents=True, exist_ok=True)
    points.tofile(osp.join(training, 'velodyne', f'{frame_id}.bin'))
    with open(osp.join(training, 'calib', f'{frame_id}.txt'), 'w') as f:
        f.write('\n'.join([_matrix_line('P0', P2), _matrix_line('P1', P2),
                           _matrix_line('P2', P2), _matrix_line('P3', P2),
                           _matrix_line('R0_rect', r0), _matrix_line('Tr_velo_to_cam', tr),
                           _matrix_line('Tr_imu_to_velo', tr)]) + '\n')
    lines = [kitti_label_line(name, box, lidar2cam, trunc, occ)
             for name, box, trunc, occ, _ in objects]
    lines.insert(1, 'DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10')
    with open(osp.join(training, 'label_2', f'{frame_id}.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return dict(boxes=np.stack([o[1] for o in objects]), counts=[o[4] for o in objects],
                points=points, lidar2cam=lidar2cam)


def _yaw_close(a, b, atol=1e-4):
    return np.allclose(np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b)))), 0, atol=atol)


def test_convert_matches_hand_made_lidar_boxes(tmp_path):
    truth = write_kitti_frame(tmp_path / 'kitti')
    out = tmp_path / 'infos' / 'kitti_train.json'
    summary = convert_kitti(str(tmp_path / 'kitti'), str(out))
    assert summary['frames'] == 1 and summary['dontcare'] == 1
    assert dict(summary['boxes']) == {'Car': 1, 'Pedestrian': 1}
    info = json.load(open(out))
    assert info['metainfo']['classes'] == ['Car', 'Pedestrian']
    frame, = info['data_list']
    assert frame['frame_id'] == '000000'
    assert not osp.isabs(frame['lidar_path'])
    assert osp.samefile(osp.join(out.parent, frame['lidar_path']),
                        tmp_path / 'kitti' / 'training' / 'velodyne' / '000000.bin')
    assert np.allclose(frame['calib']['lidar2cam'], truth['lidar2cam'], atol=1e-9)
    assert np.allclose(frame['calib']['cam2img'][:3], P2)
    boxes = np.array([inst['bbox_3d'] for inst in frame['instances']])
    assert [inst['label_name'] for inst in frame['instances']] == ['Car', 'Pedestrian']
    assert np.allclose(boxes[:, :6], truth['boxes'][:, :6], atol=1e-4)
    assert _yaw_close(boxes[:, 6], truth['boxes'][:, 6])
    # every generated point is inside its converted box, no ground point is
    assert [inst['num_lidar_pts'] for inst in frame['instances']] == truth['counts']
    # Car: 90 px tall, not occluded -> easy; Pedestrian: occluded 1 -> moderate
    assert [inst['difficulty'] for inst in frame['instances']] == [0, 1]


def test_points_in_box_count_detects_yaw_errors(tmp_path):
    """The count check above would catch a 90-degree or sign error in yaw."""
    truth = write_kitti_frame(tmp_path / 'kitti')
    for wrong in (truth['boxes'][:, 6] + np.pi / 2, -truth['boxes'][:, 6]):
        boxes = truth['boxes'].copy()
        boxes[:, 6] = wrong
        counts = points_in_boxes(truth['points'], boxes).sum(axis=0)
        assert counts[0] < 0.8 * truth['counts'][0]  # the Car loses points either way


def test_converted_info_loads_through_dataset_and_transform(tmp_path):
    truth = write_kitti_frame(tmp_path / 'kitti')
    out = tmp_path / 'kitti_train.pkl'
    convert_kitti(str(tmp_path / 'kitti'), str(out))
    ds = PointCloudDataset(str(out), pipeline=[dict(type='LoadPointsFromFile')])
    assert ds.metainfo['classes'] == ('Car', 'Pedestrian')
    results = ds[0]
    assert results['points'].shape == truth['points'].shape
    assert results['gt_labels_3d'].tolist() == [0, 1]
    counts = points_in_boxes(results['points'], results['gt_bboxes_3d']).sum(axis=0)
    assert counts.tolist() == truth['counts']


def test_split_file_and_tool_main(tmp_path, capsys):
    root = tmp_path / 'kitti'
    write_kitti_frame(root, '000000', seed=0)
    write_kitti_frame(root, '000007', seed=1)
    (root / 'ImageSets').mkdir()
    (root / 'ImageSets' / 'val.txt').write_text('000007\n')
    out = tmp_path / 'val.json'
    summary = kitti_to_ssl_det.main([str(root), '--out', str(out),
                                     '--split-file', 'ImageSets/val.txt'])
    assert summary['frames'] == 1
    assert [f['frame_id'] for f in json.load(open(out))['data_list']] == ['000007']
    printed = capsys.readouterr().out
    assert '1 frames' in printed and 'Car 1' in printed and 'dropped 1 DontCare' in printed
    # as a script from the repo root (sys.path set up by the script itself)
    argv = sys.argv
    sys.argv = ['kitti_to_ssl_det.py', str(root), '--out', str(tmp_path / 'all.json')]
    try:
        runpy.run_path(osp.join(REPO, 'tools', 'dataset_converters', 'kitti_to_ssl_det.py'),
                       run_name='__main__')
    finally:
        sys.argv = argv
    assert len(json.load(open(tmp_path / 'all.json'))['data_list']) == 2


@pytest.mark.parametrize('missing', ['label_2', 'calib'])
def test_missing_label_or_calib_names_the_file(tmp_path, missing):
    root = tmp_path / 'kitti'
    write_kitti_frame(root)
    (root / 'training' / missing / '000000.txt').unlink()
    with pytest.raises(PointCloudDataError, match=rf'frame 000000: .*{missing}/000000.txt'):
        convert_kitti(str(root), str(tmp_path / 'out.json'))
    with pytest.raises(SystemExit, match='kitti_to_ssl_det: error'):
        kitti_to_ssl_det.main([str(root), '--out', str(tmp_path / 'out.json')])


def test_bad_label_lines_name_the_file(tmp_path):
    root = tmp_path / 'kitti'
    write_kitti_frame(root)
    label = root / 'training' / 'label_2' / '000000.txt'
    good = label.read_text()
    label.write_text(good.replace('Pedestrian', 'Dog', 1))
    with pytest.raises(PointCloudDataError, match=r"000000.txt: unknown object types \['Dog'\]"):
        convert_kitti(str(root), str(tmp_path / 'o.json'))
    label.write_text('Car 0 0 0 1 2 3\n')
    with pytest.raises(PointCloudDataError, match=r'000000.txt:1: 7 fields'):
        convert_kitti(str(root), str(tmp_path / 'o.json'))
    lines = good.splitlines()
    fields = lines[0].split()
    fields[8] = '0.000000'  # zero height
    label.write_text(' '.join(fields) + '\n')
    with pytest.raises(ValueError, match=r'non-positive size.*000000.txt \(frame 000000\)'):
        convert_kitti(str(root), str(tmp_path / 'o.json'))


def test_calib_parsing(tmp_path):
    write_kitti_frame(tmp_path / 'kitti')
    tr, r0, lidar2cam = kitti_like_calib()
    calib = parse_kitti_calib(str(tmp_path / 'kitti' / 'training' / 'calib' / '000000.txt'))
    assert np.allclose(calib['Tr_velo_to_cam'], tr) and np.allclose(calib['R0_rect'], r0)
    assert np.allclose(calib['lidar2cam'], lidar2cam)
    assert calib['cam2img'].shape == (4, 4) and np.allclose(calib['cam2img'][3], [0, 0, 0, 1])
    labels = parse_kitti_label(str(tmp_path / 'kitti' / 'training' / 'label_2' / '000000.txt'))
    assert labels['name'].tolist() == ['Car', 'DontCare', 'Pedestrian']
    assert np.allclose(labels['dims_hwl'][0], [1.5, 1.8, 4.2])
    bad = tmp_path / 'bad_calib.txt'
    bad.write_text('P2: 1 2 3\n')
    with pytest.raises(PointCloudDataError, match='bad_calib.txt: P2 has 3 values'):
        parse_kitti_calib(str(bad))


def test_kitti_difficulty_levels():
    bbox = np.array([[0, 0, 10, 45], [0, 0, 10, 40], [0, 0, 10, 39.9], [0, 0, 10, 45],
                     [0, 0, 10, 30], [0, 0, 10, 30], [0, 0, 10, 24], [0, 0, 10, 60]])
    occluded = np.array([0, 0, 0, 1, 2, 3, 0, 0])
    truncated = np.array([0.1, 0.15, 0.0, 0.0, 0.5, 0.0, 0.0, 0.31])
    assert kitti_difficulty(bbox, occluded, truncated).tolist() == [0, 0, 1, 1, 2, -1, -1, 2]
