"""tools/analysis/dataset_stats_3d.py on a hand-built scene with known point counts."""
import json

import numpy as np
import pytest

from ssl_det.datasets.point_cloud_io import dump_info_file, save_points
from tools.analysis import dataset_stats_3d as stats_tool

CLASSES = ['Car', 'Pedestrian', 'Cyclist']
# A 4 x 2 x 1.6 m car heading along +x: two points near its front and back faces (outside
# the box if its yaw were off by 90°), two near its sides, one at the centre: 5 points.
CAR_A = [10.0, 0.0, -0.9, 4.0, 2.0, 1.6, 0.0]
CAR_A_POINTS = [[11.8, 0, -0.9], [8.2, 0, -0.9], [10, 0.5, -0.9], [10, -0.5, -0.9],
                [10, 0, -0.5]]
CAR_B = [30.0, 10.0, -0.9, 4.0, 2.0, 1.6, 0.7]          # empty
PED_A = [20.0, -5.0, -0.8, 0.8, 0.8, 1.8, 0.0]
CAR_C = [15.0, 8.0, -0.9, 4.0, 2.0, 1.6, np.pi / 2]     # heading +y
PED_B = [5.0, -3.0, -0.8, 0.8, 0.8, 1.8, 1.0]


def _pts(xyz):
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    return np.concatenate([xyz, np.full((len(xyz), 1), 0.5, np.float32)], axis=1)


def make_scene(root, car_a=CAR_A, name='infos.json'):
    """Two frames; counts in the info file's order: Car 5, Car 0, Ped 2 | Ped 1, Car 12."""
    ground = [[x, y, -1.7] for x in (2.0, 25.0, 40.0) for y in (-12.0, 3.0, 12.0)]
    frame0 = _pts(CAR_A_POINTS + [[20.1, -5.1, -0.5], [19.8, -4.8, -1.2]] + ground)
    car_c = [[15 + dx, 8 + dy, -0.9] for dx in (-0.6, 0.0, 0.6) for dy in (-1.5, -0.5, 0.5,
                                                                            1.5)]
    frame1 = _pts(car_c + [[5.0, -3.0, -0.8]] + ground)
    save_points(str(root / 'points' / '000000.bin'), frame0)
    save_points(str(root / 'points' / '000001.bin'), frame1)
    inst = lambda box, label: dict(bbox_3d=list(box), label_name=label)  # noqa: E731
    info = dict(metainfo=dict(classes=CLASSES, point_dim=4),
                data_list=[
                    dict(frame_id='000000', lidar_path='points/000000.bin',
                         instances=[inst(car_a, 'Car'), inst(CAR_B, 'Car'),
                                    inst(PED_A, 'Pedestrian')]),
                    dict(frame_id='000001', lidar_path='points/000001.bin',
                         instances=[inst(PED_B, 'Pedestrian'), inst(CAR_C, 'Car')]),
                    dict(frame_id='000002', lidar_path='points/missing.bin', instances=[]),
                ])
    path = root / name
    dump_info_file(info, str(path))
    return str(path)


def test_counts_order_json_and_table(tmp_path, capsys):
    info = make_scene(tmp_path)
    out = tmp_path / 'stats' / 'stats.json'
    stats_tool.main([info, '--json', str(out)])
    data = json.load(open(out))
    assert set(data) == {'info_file', 'frames', 'classes', 'boxes', 'warnings'}
    assert data['info_file'] == info
    assert data['frames'] == 3  # the frame without boxes counts, its points are not read
    assert data['boxes'] == [
        dict(frame='000000', name='Car', points=5), dict(frame='000000', name='Car', points=0),
        dict(frame='000000', name='Pedestrian', points=2),
        dict(frame='000001', name='Pedestrian', points=1),
        dict(frame='000001', name='Car', points=12)]
    assert list(data['classes']) == CLASSES
    assert data['classes']['Car'] == dict(boxes=3, points_min=0, points_median=5.0,
                                          points_max=12, empty=1)
    assert data['classes']['Pedestrian'] == dict(boxes=2, points_min=1, points_median=1.5,
                                                 points_max=2, empty=0)
    assert data['classes']['Cyclist'] == dict(boxes=0, points_min=None, points_median=None,
                                              points_max=None, empty=0)
    printed = capsys.readouterr().out
    assert 'frames: 3   boxes: 5' in printed
    row = next(line for line in printed.splitlines() if line.startswith('Car '))
    assert row.split() == ['Car', '3', '0', '5.0', '12', '1', '(33.3%)']
    # a third of the cars is empty: more than the default 20%
    warnings = [line for line in printed.splitlines() if line.startswith('WARNING')]
    assert len(warnings) == 1 and '1 of 3 Car boxes' in warnings[0]
    assert 'yaw' in warnings[0]


def test_wrong_yaw_changes_the_count(tmp_path):
    right = stats_tool.dataset_stats_3d(make_scene(tmp_path))
    wrong_box = list(CAR_A)
    wrong_box[6] += np.pi / 2
    wrong = stats_tool.dataset_stats_3d(make_scene(tmp_path, wrong_box, 'wrong.json'))
    assert right['boxes'][0]['points'] == 5
    assert wrong['boxes'][0]['points'] == 3  # the front and back points fall outside
    # a half turn keeps the same footprint: counts cannot see it (the BEV's heading tick can)
    half = list(CAR_A)
    half[6] += np.pi
    assert stats_tool.dataset_stats_3d(
        make_scene(tmp_path, half, 'half.json'))['boxes'][0]['points'] == 5


def test_threshold_unknown_class_and_recorded_counts(tmp_path):
    info_path = make_scene(tmp_path)
    info = json.load(open(info_path))
    info['data_list'][0]['instances'][2]['label_name'] = 'Van'
    info['data_list'][0]['instances'][0]['num_lidar_pts'] = 5
    info['data_list'][1]['instances'][1]['num_lidar_pts'] = 11
    dump_info_file(info, info_path)
    stats = stats_tool.dataset_stats_3d(info_path, empty_warn=0.5)
    assert list(stats['classes']) == CLASSES + ['Van']
    assert stats['classes']['Van']['boxes'] == 1
    assert stats['boxes'][0] == dict(frame='000000', name='Car', points=5, num_lidar_pts=5)
    assert len(stats['warnings']) == 2  # 1/3 empty cars is under 50%: no emptiness warning
    assert "'Van'" in stats['warnings'][0]
    assert stats['warnings'][1].startswith('1 of 2 boxes hold a different number')


def test_errors_name_the_frame(tmp_path):
    info_path = make_scene(tmp_path)
    info = json.load(open(info_path))
    info['data_list'][1]['lidar_path'] = 'points/nope.bin'
    dump_info_file(info, info_path)
    with pytest.raises(SystemExit, match=r'nope\.bin \(frame 000001\)'):
        stats_tool.main([info_path])
    info['data_list'][1]['lidar_path'] = 'points/000001.bin'
    info['data_list'][1]['instances'][0]['bbox_3d'][3] = 0
    dump_info_file(info, info_path)
    with pytest.raises(SystemExit, match=r'non-positive size.*frame 000001'):
        stats_tool.main([info_path])
    # a wrong point_dim does not divide the file size: caught, not misread
    info['data_list'][1]['instances'][0]['bbox_3d'][3] = 0.8
    dump_info_file(info, info_path)
    with pytest.raises(SystemExit, match='point_dim'):
        stats_tool.main([info_path, '--point-dim', '5'])


def test_chunked_counting_matches(tmp_path, monkeypatch):
    info = make_scene(tmp_path)
    whole = stats_tool.dataset_stats_3d(info)['boxes']
    monkeypatch.setattr(stats_tool, '_CHUNK_ELEMENTS', 40)  # 1-2 boxes per chunk
    assert stats_tool.dataset_stats_3d(info)['boxes'] == whole
