"""The GT database holds only the labeled split's objects, cropped exactly; ObjectSample pastes
them without BEV collisions, with their own points, and clears the scene's points under them."""
import importlib.util
import os.path as osp

import numpy as np
import pytest
from shapely.geometry import Polygon

from ssl_det.datasets.point_cloud_io import (PointCloudDataError, dump_info_file,
                                             load_info_file, load_points, save_points)
from ssl_det.datasets.transforms.object_sample import (ObjectSample, check_database_leak,
                                                       create_gt_database)
from ssl_det.datasets.transforms.point_cloud import GlobalRotScaleTrans, RandomFlip3D
from ssl_det.registry import TRANSFORMS
from ssl_det.structures import box3d_corners, points_in_boxes

CLASSES = ('Car', 'Pedestrian', 'Cyclist')
DIMS = {'Car': (4.0, 1.8, 1.6), 'Pedestrian': (0.8, 0.8, 1.8), 'Cyclist': (1.8, 0.7, 1.7)}
NAMES = ('Car', 'Car', 'Pedestrian', 'Cyclist')
TOOL = osp.join(osp.dirname(__file__), '..', '..', 'tools', 'dataset_converters',
                'create_gt_database.py')


def _box(rng, cell, name, jitter=0.5):
    """A box of class ``name`` standing on the ground (z = -1.7) in grid cell ``cell``
    (cells are 7 m apart, so boxes of different cells never overlap)."""
    dx, dy, dz = DIMS[name]
    x, y = 6 + 7 * (cell % 8), -24 + 7 * (cell // 8)
    return [x + rng.uniform(-jitter, jitter), y + rng.uniform(-jitter, jitter), -1.7 + dz / 2,
            dx, dy, dz, rng.uniform(-np.pi, np.pi)]


def _points(rng, boxes, counts, num_background, first_id):
    """Points inside each box (``counts``) and uniform background points; column 3 holds a
    unique id (``first_id`` + row) so that crops and pastes can be traced."""
    pts = []
    for box, n in zip(boxes, counts):
        local = rng.uniform(-0.48, 0.48, (n, 3)) * box[3:6]
        c, s = np.cos(box[6]), np.sin(box[6])
        pts.append(np.stack([c * local[:, 0] - s * local[:, 1] + box[0],
                             s * local[:, 0] + c * local[:, 1] + box[1], local[:, 2] + box[2]], 1))
    pts.append(rng.uniform([2, -27, -1.7], [60, 25, 0.3], (num_background, 3)))
    xyz = np.concatenate(pts)
    ids = first_id + np.sign(first_id + 0.5) * np.arange(len(xyz))
    return np.concatenate([xyz, ids[:, None]], axis=1).astype(np.float32)


def _frame(root, rng, index, cells, names, counts, jitter=0.5):
    boxes = np.array([_box(rng, c, n, jitter) for c, n in zip(cells, names)]).reshape(-1, 7)
    frame_id = f'{index:06d}'
    save_points(osp.join(root, 'points', f'{frame_id}.bin'),
                _points(rng, boxes, counts, 300, first_id=index * 10000))
    instances = [dict(bbox_3d=b.tolist(), label_name=n, difficulty=i % 3)
                 for i, (b, n) in enumerate(zip(boxes, names))]
    return dict(frame_id=frame_id, lidar_path=f'points/{frame_id}.bin', num_point_features=4,
                instances=instances)


@pytest.fixture(scope='module')
def split(tmp_path_factory):
    """Labeled frames 0-3 (boxes in cells 0-15, frame 0's first car has 2 points) and an empty
    labeled frame 4; unlabeled frames 5-7 (boxes in cells 16-27 only in the full info file)."""
    root = str(tmp_path_factory.mktemp('kitti_like'))
    rng = np.random.default_rng(0)
    meta = dict(classes=list(CLASSES), point_dim=4, box_convention='ssl_det_lidar_v1')
    labeled = [_frame(root, rng, f, range(4 * f, 4 * f + 4), NAMES,
                      [2 if f == 0 else 30, 40, 25, 35]) for f in range(4)]
    labeled.append(_frame(root, rng, 4, [], [], []))
    full_unlabeled = [_frame(root, rng, f, range(4 * f - 4, 4 * f), NAMES, [30, 30, 30, 30])
                      for f in range(5, 8)]
    unlabeled = [dict(f, instances=[]) for f in full_unlabeled]
    files = {}
    for name, frames, extra in (('labeled', labeled, {}),
                                ('unlabeled', unlabeled, dict(unlabeled=True)),
                                ('full', labeled + full_unlabeled, {})):
        files[name] = osp.join(root, f'infos_{name}.json')
        dump_info_file(dict(metainfo=dict(meta, **extra), data_list=frames), files[name])
    files['db'] = create_gt_database(files['labeled'], osp.join(root, 'gt_db'))
    files['root'] = root
    return files


def _scene(seed, cells=(40, 41), names=('Car', 'Pedestrian'), num_background=6000):
    rng = np.random.default_rng(seed)
    boxes = np.array([_box(rng, c, n) for c, n in zip(cells, names)]).reshape(-1, 7)
    points = _points(rng, boxes, [30] * len(boxes), num_background, first_id=-1)
    return dict(points=points, gt_bboxes_3d=boxes.astype(np.float32),
                gt_labels_3d=np.array([CLASSES.index(n) for n in names], np.int64),
                gt_difficulty=np.zeros(len(boxes), np.int64),
                gt_ignore_flags=np.zeros(len(boxes), bool), lidar_aug_matrix=np.eye(4),
                frame_id='scene')


def _copy(results):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in results.items()}


def _bev_overlap(a, b):
    """Shapely's intersection area of two boxes' BEV footprints (independent oracle)."""
    ca, cb = box3d_corners(np.stack([a, b]).astype(np.float64))[:, :4, :2]
    return Polygon(ca).intersection(Polygon(cb)).area


# ----------------------------------------------------------------------------- database
def test_database_holds_only_labeled_frames(split):
    db = load_info_file(split['db'])
    meta, objects = db['metainfo'], db['data_list']
    labeled_ids = [f['frame_id'] for f in load_info_file(split['labeled'])['data_list']]
    unlabeled_ids = {f['frame_id'] for f in load_info_file(split['unlabeled'])['data_list']}
    assert meta['source_info_file'] == osp.abspath(split['labeled'])
    assert meta['source_frame_ids'] == labeled_ids and meta['points_relative_to'] == 'box_centre'
    assert {o['frame_id'] for o in objects} == set(labeled_ids[:4])  # the empty frame adds none
    assert not {o['frame_id'] for o in objects} & unlabeled_ids
    assert len(objects) == 16 == meta['num_objects']
    full = load_info_file(split['full'])['data_list']
    hidden = np.array([i['bbox_3d'] for f in full if f['frame_id'] in unlabeled_ids
                       for i in f['instances']])
    assert len(hidden) == 12
    db_boxes = np.array([o['box'] for o in objects])
    dist = np.abs(db_boxes[:, None, :] - hidden[None]).max(-1)
    assert dist.min() > 1e-3  # no unlabeled frame's box in the database
    check_database_leak(split['db'], split['unlabeled'])

    # the check can fail: a database built from the full training set leaks
    leaky = create_gt_database(split['full'], osp.join(split['root'], 'gt_db_full'))
    leaky_boxes = np.array([o['box'] for o in load_info_file(leaky)['data_list']])
    assert np.abs(leaky_boxes[:, None, :] - hidden[None]).max(-1).min() < 1e-9
    with pytest.raises(ValueError, match='unlabeled split'):
        check_database_leak(leaky, split['unlabeled'])
    with pytest.raises(ValueError, match='unlabeled split'):
        create_gt_database(split['unlabeled'], osp.join(split['root'], 'gt_db_unl'))


def test_database_crops_exactly_relative_to_centre(split):
    db = load_info_file(split['db'])
    frames = {f['frame_id']: f for f in load_info_file(split['labeled'])['data_list']}
    for obj in db['data_list']:
        frame = frames[obj['frame_id']]
        inst = frame['instances'][obj['instance_idx']]
        assert obj['box'] == inst['bbox_3d'] and obj['name'] == inst['label_name']
        assert obj['difficulty'] == inst['difficulty']
        src = load_points(osp.join(split['root'], frame['lidar_path']))
        crop = src[points_in_boxes(src, np.array([obj['box']]))[:, 0]]
        rel = load_points(osp.join(osp.dirname(split['db']), obj['path']))
        assert obj['num_points'] == len(rel) == len(crop)
        assert np.array_equal(rel[:, 3], crop[:, 3])
        np.testing.assert_allclose(rel[:, :3] + np.float32(obj['box'][:3]), crop[:, :3],
                                   atol=1e-5)
        assert np.abs(rel[:, :3]).max() < max(obj['box'][3:6])  # stored relative, not absolute


def test_tool_cli(split, tmp_path):
    spec = importlib.util.spec_from_file_location('create_gt_database_tool', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / 'db'
    tool.main([split['labeled'], '--out-dir', str(out), '--classes', 'Car', 'Cyclist',
               '--unlabeled-info-file', split['unlabeled']])
    objects = load_info_file(str(out / 'dbinfos.json'))['data_list']
    assert sorted({o['name'] for o in objects}) == ['Car', 'Cyclist'] and len(objects) == 12
    with pytest.raises(SystemExit, match='unlabeled split'):
        tool.main([split['full'], '--out-dir', str(tmp_path / 'leak'),
                   '--unlabeled-info-file', split['unlabeled']])


# ----------------------------------------------------------------------------- pasting
@pytest.mark.parametrize('seed', range(3))
def test_paste_reaches_targets_with_own_points(split, seed):
    raw = _scene(seed)
    sampler = ObjectSample(split['db'], dict(Car=6, Pedestrian=3, Cyclist=3), CLASSES,
                           min_points=5)
    np.random.seed(seed)
    out = sampler(_copy(raw))
    labels = out['gt_labels_3d']
    assert [int((labels == i).sum()) for i in range(3)] == [6, 3, 3]  # space allows: reached
    assert out['num_pasted_objects'] == 10
    for key in ('gt_bboxes_3d', 'gt_labels_3d', 'gt_difficulty', 'gt_ignore_flags'):
        assert len(out[key]) == 12 and np.array_equal(out[key][:2], raw[key])
    assert not out['gt_ignore_flags'].any() and np.array_equal(out['lidar_aug_matrix'], np.eye(4))
    pasted = out['gt_bboxes_3d'][2:].astype(np.float64)
    db = {tuple(np.float32(o['box'])): o for o in load_info_file(split['db'])['data_list']}
    objs = [db[tuple(b.astype(np.float32))] for b in pasted]  # pasted at their recorded box
    assert all(o['num_points'] >= 5 for o in objs)  # frame 0's 2-point car is never drawn
    assert list(out['gt_difficulty'][2:]) == [o['difficulty'] for o in objs]
    assert [CLASSES[i] for i in labels[2:]] == [o['name'] for o in objs]

    ids = out['points'][:, 3]
    scene_pts, pasted_pts = out['points'][ids < 0], out['points'][ids >= 0]
    inside = points_in_boxes(pasted_pts, pasted)
    for m, obj in enumerate(objs):
        mine = pasted_pts[:, 3] // 10000 == int(obj['frame_id'])
        mine &= np.isin(pasted_pts[:, 3], _source_ids(split, obj))
        assert mine.sum() == obj['num_points'] and inside[mine, m].all()
    assert len(pasted_pts) == sum(o['num_points'] for o in objs)
    # the scene's points under pasted boxes are gone, and only those
    assert not points_in_boxes(scene_pts, pasted).any()
    raw_under = points_in_boxes(raw['points'], pasted).any(axis=1)
    assert raw_under.sum() > 5 and len(scene_pts) == (~raw_under).sum()
    # BEV collisions: none, by shapely
    boxes = out['gt_bboxes_3d']
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert _bev_overlap(boxes[i], boxes[j]) < 1e-9


def _source_ids(split, obj):
    rel = load_points(osp.join(osp.dirname(split['db']), obj['path']))
    return rel[:, 3]


def test_paste_avoids_collisions_when_space_is_short(split, tmp_path):
    """All database objects sit in four cells (drawn from eight frames, centres within
    0.2 m, so two objects of one cell always overlap): most candidates collide, at most one
    per free cell fits, and what is pasted must not overlap anything."""
    rng = np.random.default_rng(1)
    frames = [_frame(str(tmp_path), rng, f, [0, 1, 2, 3], NAMES, [20] * 4, jitter=0.2)
              for f in range(8)]
    info = str(tmp_path / 'crowded.json')
    dump_info_file(dict(metainfo=dict(point_dim=4), data_list=frames), info)
    db = create_gt_database(info, str(tmp_path / 'db'))
    sampler = ObjectSample(db, dict(Car=8, Pedestrian=4, Cyclist=4), CLASSES, max_trials=4)
    for seed in range(4):
        raw = _scene(seed, cells=(1, 40), names=('Car', 'Car'), num_background=500)
        np.random.seed(seed)
        out = sampler(_copy(raw))
        boxes = out['gt_bboxes_3d']
        assert 1 <= out['num_pasted_objects'] <= 3 and len(boxes) == 2 + out['num_pasted_objects']
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert _bev_overlap(boxes[i], boxes[j]) < 1e-9


def test_pasted_objects_of_different_classes_do_not_collide(tmp_path):
    """Candidates are checked against the objects already pasted for earlier classes too:
    the database's cars and pedestrians all stand in one cell (centres within 0.3 m of it, so
    any two overlap), so after one car no pedestrian fits."""
    rng = np.random.default_rng(2)
    frames = [_frame(str(tmp_path), rng, f, [0], [('Car', 'Pedestrian')[f % 2]], [20],
                     jitter=0.2) for f in range(4)]
    info = str(tmp_path / 'one_cell.json')
    dump_info_file(dict(metainfo=dict(point_dim=4), data_list=frames), info)
    db = create_gt_database(info, str(tmp_path / 'db'))
    sampler = ObjectSample(db, dict(Car=2, Pedestrian=2), CLASSES)
    for seed in range(3):
        np.random.seed(seed)
        out = sampler(_copy(_scene(seed, cells=(), names=(), num_background=200)))
        assert out['num_pasted_objects'] == 1
        assert out['gt_labels_3d'].tolist() == [CLASSES.index('Car')]


def test_paste_is_seeded_cached_or_not_and_skips_full_scenes(split):
    raw = _scene(0)
    groups = dict(Car=4, Pedestrian=2, Cyclist=2)
    a, b = ObjectSample(split['db'], groups), ObjectSample(split['db'], groups,
                                                            max_cached_points=0)
    np.random.seed(3)
    out_a = a(_copy(raw))
    np.random.seed(3)
    out_b = b(_copy(raw))
    assert a._points_cache is not None and b._points_cache is None
    assert np.array_equal(out_a['points'], out_b['points'])
    assert np.array_equal(out_a['gt_bboxes_3d'], out_b['gt_bboxes_3d'])
    np.random.seed(4)
    assert not np.array_equal(a(_copy(raw))['gt_bboxes_3d'], out_a['gt_bboxes_3d'])
    full = ObjectSample(split['db'], dict(Car=1, Pedestrian=1))(_copy(raw))
    assert full['num_pasted_objects'] == 0 and np.array_equal(full['points'], raw['points'])
    kept = ObjectSample(split['db'], groups, remove_points_in_pasted_boxes=False)(_copy(raw))
    assert (kept['points'][:, 3] < 0).sum() == len(raw['points'])


def test_min_points_excludes_sparse_objects(split):
    """Targets above the pool size draw every eligible car: 7 of the 8 at min_points=5
    (frame 0's first car has 2 points), all 8 at min_points=2."""
    raw = _scene(0, cells=(), names=())
    for min_points, expected in ((5, 7), (dict(Car=2), 8)):
        np.random.seed(0)
        out = ObjectSample(split['db'], dict(Car=20), min_points=min_points)(_copy(raw))
        assert out['num_pasted_objects'] == expected
        assert (points_in_boxes(out['points'], out['gt_bboxes_3d']).sum(0) >= 2).all()


def test_paste_refuses_after_geometric_transforms(split, tmp_path):
    sampler = TRANSFORMS.build(dict(type='ssl_det.ObjectSample', db_info_file=split['db']))
    assert repr(sampler).startswith('ObjectSample(db_info_file=')
    for transform in (GlobalRotScaleTrans(translation_std=1.0), RandomFlip3D(flip_y_ratio=1.0)):
        moved = transform(_scene(0))
        with pytest.raises(ValueError, match='before every geometric transform'):
            sampler(moved)
    no_matrix = _scene(0)
    del no_matrix['lidar_aug_matrix']
    sampler(no_matrix)  # a missing matrix means the raw frame
    with pytest.raises(PointCloudDataError, match='create_gt_database'):
        ObjectSample(str(tmp_path / 'missing.json'))(_scene(0))
    with pytest.raises(ValueError, match='not in classes'):
        ObjectSample(split['db'], dict(Van=3))
