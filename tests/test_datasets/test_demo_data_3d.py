import hashlib
import os
import os.path as osp

import numpy as np
import pytest
import torch

from ssl_det.datasets.demo_data_3d import (BOX, CLASSES, DEMO_GT_DATABASES, GROUND_Z,
                                           POINT_CLOUD_RANGE, ensure_demo_gt_databases,
                                           make_demo_data_3d, object_primitives, scan_scene)
from ssl_det.datasets.point_cloud_io import load_info_file, load_points, resolve_path
from ssl_det.ops import rotated_iou_bev
from ssl_det.structures import points_in_boxes
from tools.misc import make_demo_data as make_tool


def _tree_hash(root):
    digest = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = osp.join(dirpath, name)
            digest.update(osp.relpath(path, root).encode())
            digest.update(open(path, 'rb').read())
    return digest.hexdigest()


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo3d'))
    files = make_demo_data_3d(root, num_train=10, num_val=4, seed=3, labeled_percent=20,
                              verbose=False)
    return root, files


def _frames(info_file, data_root=None):
    for frame in load_info_file(info_file)['data_list']:
        points = load_points(resolve_path(frame['lidar_path'], info_file, data_root))
        boxes = np.array([i['bbox_3d'] for i in frame['instances']]).reshape(-1, 7)
        yield frame, points, boxes


def _scene(*items):
    """A hand-made scene: ``(label, box)`` objects, ``(None, box)`` plain boxes (clutter)."""
    rng = np.random.default_rng(0)
    prims, boxes, labels = [], [], []
    for label, box in items:
        box = np.array([box[0], box[1], GROUND_Z + box[5] / 2, *box[3:]], np.float64)
        if label is None:
            prims.append([[BOX, *box[:3], *box[3:6] / 2, box[6], 0.5, 0.02, -1]])
            continue
        prims.append(object_primitives(label, box, rng, owner=len(boxes)))
        boxes.append(box)
        labels.append(label)
    return dict(boxes=np.array(boxes).reshape(-1, 7), labels=np.array(labels),
                prims=np.concatenate(prims), road_y=0.0, road_half=5.0)


def _car(x, y, yaw):
    return 0, (x, y, 0, 3.9, 1.6, 1.5, yaw)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(num_train=4, num_val=2, labeled_percent=50, verbose=False)
    make_demo_data_3d(str(tmp_path / 'a'), seed=7, **kw)
    make_demo_data_3d(str(tmp_path / 'b'), seed=7, **kw)
    make_demo_data_3d(str(tmp_path / 'c'), seed=8, **kw)
    assert _tree_hash(tmp_path / 'a') == _tree_hash(tmp_path / 'b')
    assert _tree_hash(tmp_path / 'a') != _tree_hash(tmp_path / 'c')
    # a frame does not depend on how many frames are made
    make_demo_data_3d(str(tmp_path / 'd'), seed=7, num_train=2, num_val=0,
                      labeled_percent=None, verbose=False)
    for name in ('000000.bin', '000001.bin'):
        assert (open(tmp_path / 'a' / 'points' / name, 'rb').read()
                == open(tmp_path / 'd' / 'points' / name, 'rb').read())


def test_files_and_split(demo):
    root, files = demo
    assert files == dict(train=osp.join(root, 'train.json'), val=osp.join(root, 'val.json'),
                         labeled=osp.join(root, 'semi_anns', 'train.1@20.json'),
                         unlabeled=osp.join(root, 'semi_anns', 'train.1@20-unlabeled.json'))
    train, val = load_info_file(files['train']), load_info_file(files['val'])
    assert train['metainfo']['classes'] == list(CLASSES)
    assert train['metainfo']['point_dim'] == 4
    train_ids = {f['frame_id'] for f in train['data_list']}
    assert len(train_ids) == 10 and len(val['data_list']) == 4
    assert not train_ids & {f['frame_id'] for f in val['data_list']}
    labeled, unlabeled = load_info_file(files['labeled']), load_info_file(files['unlabeled'])
    assert len(labeled['data_list']) == 2 and len(unlabeled['data_list']) == 8
    assert all(f['instances'] for f in labeled['data_list'])
    assert all(f['instances'] == [] for f in unlabeled['data_list'])
    assert unlabeled['metainfo']['unlabeled'] is True
    # split files sit in semi_anns/; their point paths are relative to that folder and
    # resolve to the same files as train.json's
    train_frames = {f['frame_id']: f for f in train['data_list']}
    for split in ('labeled', 'unlabeled'):
        for frame, points, _ in _frames(files[split]):
            assert osp.samefile(resolve_path(frame['lidar_path'], files[split]),
                                resolve_path(train_frames[frame['frame_id']]['lidar_path'],
                                             files['train']))
            assert len(points) > 1000


def test_labels_match_the_points(demo):
    _, files = demo
    seen, num_boxes = set(), 0
    for split in ('train', 'val'):
        for frame, points, boxes in _frames(files[split]):
            lo, hi = np.array(POINT_CLOUD_RANGE[:3]), np.array(POINT_CLOUD_RANGE[3:])
            assert ((points[:, :3] >= lo) & (points[:, :3] <= hi)).all()
            assert points[:, 3].min() >= 0 and points[:, 3].max() <= 1
            # the ground is there, flat at GROUND_Z, out to the far end of the range
            ground = np.abs(points[:, 2] - GROUND_Z) < 0.1
            assert ground.mean() > 0.5 and points[ground, 0].max() > 50
            assert abs(np.median(points[ground, 2]) - GROUND_Z) < 0.01
            counts = points_in_boxes(points, boxes).sum(0)
            for inst, count in zip(frame['instances'], counts):
                assert inst['num_lidar_pts'] == count >= 1
                level = 0 if count >= 50 else 1 if count >= 15 else 2
                assert inst['difficulty'] == min(level + (inst['occlusion'] > 0.5), 2)
                seen.add(inst['label_name'])
            # boxes stand on the ground and do not overlap
            np.testing.assert_allclose(boxes[:, 2] - boxes[:, 5] / 2, GROUND_Z, atol=2e-4)
            iou = rotated_iou_bev(torch.from_numpy(boxes), torch.from_numpy(boxes)).numpy()
            assert np.allclose(iou - np.diag(np.diag(iou)), 0)
            num_boxes += len(boxes)
    assert seen == set(CLASSES) and num_boxes >= 3 * 14


def test_sizes_per_class(demo):
    _, files = demo
    boxes = {c: [] for c in CLASSES}
    for frame, _, _ in _frames(files['train']):
        for inst in frame['instances']:
            boxes[inst['label_name']].append(inst['bbox_3d'][3:6])
    for name, mean in (('Car', (3.9, 1.6, 1.5)), ('Pedestrian', (0.8, 0.6, 1.75)),
                       ('Cyclist', (1.8, 0.6, 1.7))):
        dims = np.array(boxes[name])
        assert (dims >= 0.9 * np.array(mean) - 1e-3).all()
        assert (dims <= 1.1 * np.array(mean) + 1e-3).all()


def test_unlabeled_clutter_is_present(demo):
    _, files = demo
    outside = total = 0
    for _, points, boxes in _frames(files['train']):
        above = points[points[:, 2] > GROUND_Z + 0.2]
        total += len(above)
        outside += (~points_in_boxes(above, boxes).any(1)).sum()
    assert outside > 0.2 * total


@pytest.mark.parametrize('yaw_offset', [0.0, 0.4, 1.2, 2.2, -2.8])
def test_only_sensor_facing_sides_get_points(yaw_offset):
    x, y = 14.0, 5.0
    yaw = np.arctan2(y, x) + np.pi / 2 + yaw_offset
    scene = _scene(_car(x, y, yaw))
    points, instances, _ = scan_scene(scene, np.random.default_rng(1))
    box = scene['boxes'][0]
    assert instances[0]['num_lidar_pts'] > 100 and instances[0]['occlusion'] == 0
    # body-height points in the car's frame, and the sensor's position there
    rel = points[:, :3] - box[:3]
    c, s = np.cos(yaw), np.sin(yaw)
    local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1],
                      rel[:, 2]], 1)
    sensor = np.array([-c * x - s * y, s * x - c * y])
    body = points_in_boxes(points, box[None], margin=0.1)[:, 0] & (local[:, 2] > -0.45) & (
        local[:, 2] < -0.1)
    # each body point on its nearest side face; is that face turned to the sensor?
    gap = box[3:5] / 2 - np.abs(local[:, :2])
    axis = gap.argmin(1)
    on_face = body & (gap.min(1) < 0.12)
    side = np.sign(local[np.arange(len(local)), axis])
    facing = side * sensor[axis] > box[3 + axis] / 2
    near, far = (on_face & facing).sum(), (on_face & ~facing).sum()
    assert near > 100 and far <= 0.02 * near, (near, far)


def test_density_falls_with_range():
    counts = []
    for dist in (10.0, 20.0, 40.0):
        points, instances, _ = scan_scene(_scene(_car(dist, 0.0, np.pi / 2)),
                                          np.random.default_rng(2))
        counts.append(instances[0]['num_lidar_pts'])
    assert counts[0] > 2 * counts[1] and counts[1] > 3 * counts[2] > 0


def test_objects_hide_each_other():
    car = _car(30.0, 0.0, np.pi / 2)
    alone = scan_scene(_scene(car), np.random.default_rng(3))[1][0]
    wall = (None, (15.0, 0.0, 0, 0.3, 6.0, 3.0, 0.0))
    for items in ((car, wall), (wall, car)):  # whatever the order of the primitives
        points, instances, dropped = scan_scene(_scene(*items), np.random.default_rng(3))
        assert instances == [] and dropped == 1  # fully hidden: dropped, and counted
    half = (None, (15.0, -1.0, 0, 0.3, 2.0, 3.0, 0.0))  # hides the car's right half
    part = scan_scene(_scene(car, half), np.random.default_rng(3))[1][0]
    assert 0.3 < part['occlusion'] < 0.7
    assert 0.3 * alone['num_lidar_pts'] < part['num_lidar_pts'] < 0.7 * alone['num_lidar_pts']
    # a pedestrian right in front of the car hides a little of it
    ped = (1, (25.0, 0.0, 0, 0.8, 0.6, 1.75, 0.0))
    points, instances, _ = scan_scene(_scene(car, ped), np.random.default_rng(3))
    assert 0.02 < instances[0]['occlusion'] < 0.3 and instances[1]['occlusion'] == 0


def test_make_demo_data_tool(tmp_path, capsys):
    make_tool.main(['--task', '3d', '--out-dir', str(tmp_path / 'd3'), '--num-train', '6',
                    '--num-val', '3'])
    out = capsys.readouterr().out
    assert str(tmp_path / 'd3' / 'semi_anns' / 'train.1@10.json') in out
    assert len(load_info_file(str(tmp_path / 'd3' / 'train.json'))['data_list']) == 6
    assert len(load_info_file(str(tmp_path / 'd3' / 'val.json'))['data_list']) == 3
    assert len(os.listdir(tmp_path / 'd3' / 'points')) == 9
    # 2D stays the default
    make_tool.main(['--out-dir', str(tmp_path / 'd2'), '--num-train', '2', '--num-val', '1'])
    assert osp.isfile(tmp_path / 'd2' / 'annotations' / 'instances_train.json')


def test_gt_databases_come_from_their_own_frames_and_are_built_once(tmp_path):
    """The GT-sampling configs' databases: the 10% one from the labeled frames only (never an
    unlabeled one), the oracle's from every train frame; kept when there, and a labeled
    database that holds unlabeled frames is refused."""
    root = str(tmp_path)
    make_demo_data_3d(root, num_train=10, num_val=2, seed=3, verbose=False)
    ensure_demo_gt_databases(root)

    def frames(name):
        return {f['frame_id'] for f in load_info_file(osp.join(root, name))['data_list']}
    labeled, train = frames('semi_anns/train.1@10.json'), frames('train.json')
    assert labeled and labeled < train
    files = [osp.join(root, out, 'dbinfos.json') for _, out in DEMO_GT_DATABASES]
    for db_file, source in zip(files, (labeled, train)):
        db = load_info_file(db_file)
        assert set(db['metainfo']['source_frame_ids']) == source
        assert db['data_list'] and {o['frame_id'] for o in db['data_list']} <= source
    stamps = [os.stat(f).st_mtime_ns for f in files]
    ensure_demo_gt_databases(root)
    assert [os.stat(f).st_mtime_ns for f in files] == stamps
    with open(files[1], 'rb') as src, open(files[0], 'wb') as dst:
        dst.write(src.read())
    with pytest.raises(ValueError, match='unlabeled split'):
        ensure_demo_gt_databases(root)
