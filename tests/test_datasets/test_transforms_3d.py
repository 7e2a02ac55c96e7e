"""3D transforms move a box and its points together, record the map's direction in
``lidar_aug_matrix``, keep heading, and filter per-box arrays together."""
import numpy as np
import pytest
import torch

from ssl_det.datasets.transforms.formatting_3d import PackPointCloudInputs
from ssl_det.datasets.transforms.point_cloud import (BOX_KEYS, GlobalRotScaleTrans,
                                                     ObjectMinPointsFilter, ObjectNameFilter,
                                                     ObjectRangeFilter, PointDropout,
                                                     PointJitter, PointShuffle, PointsRangeFilter,
                                                     RandomFlip3D, apply_aug_matrix)
from ssl_det.registry import TRANSFORMS
from ssl_det.structures import (PointCloudDataSample, limit_period, points_in_boxes,
                                transform_boxes3d, transform_points, weak_to_strong_matrix)

PCR = [0, -32, -3, 64, 32, 1]
ROT_TRANS = dict(rot_range=(-np.pi, np.pi), scale_range=(0.8, 1.2),
                 translation_std=(2.0, 2.0, 0.5))


def _scene(seed, num_boxes=5, num_outside=300):
    """Boxes of random yaw with points inside (5% away from the faces), a few points just
    behind each front face (+dx/2 side), and points >= 0.3 m outside every box. Column 3
    is the point's row id, so rows can be followed through drops and shuffles."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(24, num_boxes, replace=False)
    centres = np.stack([8 + 8 * (cells % 6), -20 + 10 * (cells // 6),
                        rng.uniform(-1, 0, num_boxes)], axis=1)
    centres[:, :2] += rng.uniform(-1, 1, (num_boxes, 2))
    dims = rng.uniform([1.5, 0.8, 1.4], [4.5, 2.0, 2.0], (num_boxes, 3))
    boxes = np.concatenate([centres, dims, rng.uniform(-np.pi, np.pi, (num_boxes, 1))], axis=1)
    pts, owner, front = [], [], []
    for m, box in enumerate(boxes):
        local = rng.uniform(-0.45, 0.45, (40, 3)) * box[3:6]
        face = rng.uniform([0.38, -0.3, -0.3], [0.45, 0.3, 0.3], (6, 3)) * box[3:6]
        for block, is_front in ((local, False), (face, True)):
            c, s = np.cos(box[6]), np.sin(box[6])
            xy = block[:, :2] @ np.array([[c, s], [-s, c]])
            pts.append(np.concatenate([xy, block[:, 2:]], axis=1) + box[:3])
            owner += [m] * len(block)
            front += [is_front] * len(block)
    outside = rng.uniform([0, -30, -2.5], [64, 30, 0.5], (num_outside * 2, 3))
    outside = outside[~points_in_boxes(outside, boxes, margin=0.3).any(axis=1)][:num_outside]
    pts.append(outside)
    owner += [-1] * len(outside)
    front += [False] * len(outside)
    xyz = np.concatenate(pts)
    points = np.concatenate([xyz, np.arange(len(xyz))[:, None]], axis=1).astype(np.float32)
    results = dict(points=points, gt_bboxes_3d=boxes.astype(np.float32),
                   gt_labels_3d=rng.integers(0, 3, num_boxes).astype(np.int64),
                   gt_difficulty=np.arange(num_boxes, dtype=np.int64),
                   gt_ignore_flags=np.arange(num_boxes) % 2 == 1,
                   lidar_aug_matrix=np.eye(4), frame_id=f'{seed:06d}', sample_idx=seed,
                   lidar_path=f'points/{seed:06d}.bin', num_point_features=4)
    return results, np.array(owner), np.array(front)


def _copy(results):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in results.items()}


def _run(transforms, results):
    for t in transforms:
        results = t(results)
    return results


def _assert_boxes_close(a, b, atol=1e-3):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    np.testing.assert_allclose(a[:, :6], b[:, :6], atol=atol)
    np.testing.assert_allclose(limit_period(a[:, 6] - b[:, 6]), 0, atol=atol)


def _assert_moved_together(raw, owner, front, out):
    """(a) inside stays inside and outside stays outside, (b) the recorded matrix maps the
    raw scene onto this view, (c) front-face points are at the box's front."""
    matrix = out['lidar_aug_matrix']
    # (b) the direction: raw -> view
    _assert_boxes_close(transform_boxes3d(raw['gt_bboxes_3d'], matrix), out['gt_bboxes_3d'])
    np.testing.assert_allclose(transform_points(raw['points'], matrix), out['points'], atol=1e-3)
    # (a) membership; row ids (column 3) follow the points
    ids = out['points'][:, 3].astype(int)
    inside = points_in_boxes(out['points'], out['gt_bboxes_3d'])
    for m in range(len(out['gt_bboxes_3d'])):
        assert inside[owner[ids] == m, m].all()
    assert not inside[owner[ids] == -1].any()
    # (c) heading: front-face points have local x > 0 in their transformed box
    boxes = np.asarray(out['gt_bboxes_3d'], np.float64)
    for m in range(len(boxes)):
        sel = front[ids] & (owner[ids] == m)
        rel = out['points'][sel, :2] - boxes[m, :2]
        local_x = rel @ np.array([np.cos(boxes[m, 6]), np.sin(boxes[m, 6])])
        assert sel.sum() == 6 and (local_x > 0.3 * boxes[m, 3]).all()


PIPELINES = {
    'flip_y': lambda: [RandomFlip3D(flip_y_ratio=1.0)],
    'flip_x': lambda: [RandomFlip3D(flip_y_ratio=0.0, flip_x_ratio=1.0)],
    'flip_xy': lambda: [RandomFlip3D(flip_y_ratio=1.0, flip_x_ratio=1.0)],
    'rot_scale_trans': lambda: [GlobalRotScaleTrans(**ROT_TRANS)],
    'flip_then_rot': lambda: [RandomFlip3D(flip_y_ratio=1.0), GlobalRotScaleTrans(**ROT_TRANS)],
    'rot_then_flip': lambda: [GlobalRotScaleTrans(**ROT_TRANS), RandomFlip3D(flip_y_ratio=1.0)],
    'rot_flip_rot': lambda: [GlobalRotScaleTrans(**ROT_TRANS), RandomFlip3D(flip_x_ratio=1.0),
                             GlobalRotScaleTrans(**ROT_TRANS)],
}


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('name', sorted(PIPELINES))
def test_boxes_and_points_move_together(name, seed):
    raw, owner, front = _scene(seed)
    np.random.seed(seed)
    out = _run(PIPELINES[name](), _copy(raw))
    assert not np.allclose(out['lidar_aug_matrix'], np.eye(4))
    _assert_moved_together(raw, owner, front, out)
    for key in ('gt_labels_3d', 'gt_difficulty', 'gt_ignore_flags'):
        assert np.array_equal(out[key], raw[key])
    assert out['points'].dtype == np.float32 and out['gt_bboxes_3d'].dtype == np.float32


def test_known_matrices():
    """Hand-computed values: a quarter turn, scale 2, shift +1 in x; and both flips."""
    mat = GlobalRotScaleTrans.matrix(np.pi / 2, 2.0, (1.0, 0.0, 0.0))
    res = dict(points=np.array([[1, 0, 0.5, 7]], np.float32),
               gt_bboxes_3d=np.array([[1, 0, 0.5, 4, 2, 1, 0.0]], np.float32))
    out = apply_aug_matrix(res, mat)
    np.testing.assert_allclose(out['points'], [[1, 2, 1, 7]], atol=1e-6)
    _assert_boxes_close(out['gt_bboxes_3d'], [[1, 2, 1, 8, 4, 2, np.pi / 2]], atol=1e-6)

    box = np.array([[3, 2, 0, 4, 2, 1, 0.3]], np.float32)
    out = RandomFlip3D(flip_y_ratio=1.0)(dict(points=np.array([[1, 2, 3, 0]], np.float32),
                                              gt_bboxes_3d=box.copy()))
    np.testing.assert_allclose(out['points'], [[1, -2, 3, 0]])
    _assert_boxes_close(out['gt_bboxes_3d'], [[3, -2, 0, 4, 2, 1, -0.3]], atol=1e-6)
    assert out['flip_y'] is True and out['flip_x'] is False
    out = RandomFlip3D(flip_y_ratio=0.0, flip_x_ratio=1.0)(dict(gt_bboxes_3d=box.copy()))
    _assert_boxes_close(out['gt_bboxes_3d'], [[-3, 2, 0, 4, 2, 1, np.pi - 0.3]], atol=1e-6)
    assert out['flip_x'] is True and out['flip_y'] is False


def test_matrix_left_multiplies_onto_existing():
    raw, _, _ = _scene(0)
    prior = GlobalRotScaleTrans.matrix(0.4, 1.1, (3.0, -1.0, 0.2))
    res = _copy(raw)
    res['lidar_aug_matrix'] = prior.copy()
    np.random.seed(1)
    out = GlobalRotScaleTrans(**ROT_TRANS)(res)
    np.random.seed(1)
    step = GlobalRotScaleTrans(**ROT_TRANS)(_copy(raw))['lidar_aug_matrix']
    np.testing.assert_allclose(out['lidar_aug_matrix'], step @ prior, atol=1e-12)
    res = _copy(raw)
    del res['lidar_aug_matrix']
    np.testing.assert_allclose(RandomFlip3D(1.0)(res)['lidar_aug_matrix'],
                               np.diag([1.0, -1.0, 1.0, 1.0]))


@pytest.mark.parametrize('seed', range(3))
def test_weak_to_strong_maps_weak_boxes_onto_strong(seed):
    raw, owner, front = _scene(seed)
    np.random.seed(seed)
    weak = _run([RandomFlip3D(0.5), GlobalRotScaleTrans((-0.3, 0.3), (0.97, 1.03))], _copy(raw))
    strong = _run([GlobalRotScaleTrans(**ROT_TRANS), RandomFlip3D(1.0),
                   GlobalRotScaleTrans(**ROT_TRANS)], _copy(raw))
    w2s = weak_to_strong_matrix(weak['lidar_aug_matrix'], strong['lidar_aug_matrix'])
    _assert_boxes_close(transform_boxes3d(weak['gt_bboxes_3d'], w2s), strong['gt_bboxes_3d'])
    np.testing.assert_allclose(transform_points(weak['points'], w2s), strong['points'], atol=2e-3)
    # the opposite direction does not match (the check can tell)
    wrong = transform_boxes3d(weak['gt_bboxes_3d'], np.linalg.inv(w2s))
    assert np.abs(wrong[:, :2] - strong['gt_bboxes_3d'][:, :2]).max() > 0.5


def test_random_draws_follow_numpy_seed_and_ranges():
    raw, _, _ = _scene(0)
    pipeline = [RandomFlip3D(0.5, 0.5), GlobalRotScaleTrans(**ROT_TRANS), PointDropout(0.2),
                PointJitter(), PointShuffle()]

    def run(seed):
        np.random.seed(seed)
        return _run(pipeline, _copy(raw))

    a, b, c = run(5), run(5), run(6)
    for key in ('points', 'gt_bboxes_3d', 'lidar_aug_matrix'):
        assert np.array_equal(a[key], b[key])
    assert not np.array_equal(a['lidar_aug_matrix'], c['lidar_aug_matrix'])
    t = GlobalRotScaleTrans(rot_range=0.5, scale_range=(0.9, 1.1))
    flips = []
    for seed in range(40):
        np.random.seed(seed)
        mat = t(dict(points=raw['points'][:1].copy()))['lidar_aug_matrix']
        scale = np.linalg.norm(mat[:2, 0])
        assert 0.9 <= scale <= 1.1 and abs(np.arctan2(mat[1, 0], mat[0, 0])) <= 0.5
        assert np.allclose(mat[:3, 3], 0)
        flips.append(RandomFlip3D(0.5)(dict())['flip_y'])
    assert 5 < sum(flips) < 35


def test_range_filters_keep_per_box_keys_in_sync():
    raw, _, _ = _scene(2, num_boxes=8)
    res = _copy(raw)
    res['gt_bboxes_3d'][[1, 4], 0] = [-2.0, 70.0]  # centres out of x range
    res['gt_bboxes_3d'][6, 1] = 40.0  # out of y range
    res['gt_bboxes_3d'][3, 2] = 30.0  # z out of range: kept (BEV check only)
    before = _copy(res)
    out = ObjectRangeFilter(PCR)(res)
    keep = np.array([0, 2, 3, 5, 7])
    for key in BOX_KEYS:
        assert np.array_equal(out[key], before[key][keep]), key
    assert out['num_filtered_boxes'] == 3
    assert np.array_equal(out['points'], before['points'])
    assert np.array_equal(out['lidar_aug_matrix'], np.eye(4))
    # the next filter adds to the count
    out['gt_labels_3d'][1] = -1
    out = ObjectNameFilter(('Car', 'Pedestrian', 'Cyclist'))(out)
    assert out['num_filtered_boxes'] == 4 and np.array_equal(out['gt_difficulty'], [0, 3, 5, 7])

    res = _copy(raw)
    res['points'][:5, :3] = [[-1, 0, 0], [64, 0, 0], [10, -33, 0], [10, 0, 1.0], [0, -32, -3]]
    out = PointsRangeFilter(PCR)(res)
    pts = raw['points'][:, :3]
    expect = ((res['points'][:, :3] >= PCR[:3]) & (res['points'][:, :3] < PCR[3:])).all(1)
    assert np.array_equal(out['points'], res['points'][expect])
    assert out['num_filtered_points'] == 4 == len(pts) - len(out['points'])
    for key in BOX_KEYS:
        assert np.array_equal(out[key], raw[key])


def test_object_range_filter_keeps_the_lower_edges_and_drops_the_upper():
    """ObjectRangeFilter's BEV range is half-open like the voxel grid's, ``min <= centre <
    max`` on x and on y, each against its own bounds (x in [0, 64), y in [-32, 32))."""
    centres = [[0.0, 0.0], [64.0, 0.0], [10.0, -32.0], [10.0, 32.0], [63.5, 31.5],
               [40.0, 10.0], [10.0, 40.0]]
    boxes = np.array([[x, y, 0.0, 2.0, 2.0, 2.0, 0.0] for x, y in centres], np.float32)
    out = ObjectRangeFilter(PCR)(dict(gt_bboxes_3d=boxes, gt_labels_3d=np.arange(7)))
    assert out['gt_labels_3d'].tolist() == [0, 2, 4, 5]
    assert out['num_filtered_boxes'] == 3


def test_min_points_filter_counts_points_inside():
    raw, owner, _ = _scene(3, num_boxes=4)
    res = _copy(raw)
    # box 1 keeps 2 points, box 2 none
    drop = ((owner == 1) & (np.cumsum(owner == 1) > 2)) | (owner == 2)
    res['points'] = res['points'][~drop]
    out = ObjectMinPointsFilter(min_points=3)(_copy(res))
    assert np.array_equal(out['gt_difficulty'], [0, 3])
    assert np.array_equal(out['gt_ignore_flags'], raw['gt_ignore_flags'][[0, 3]])
    assert out['num_filtered_boxes'] == 2 and len(out['points']) == (~drop).sum()
    out = ObjectMinPointsFilter(min_points=2)(_copy(res))
    assert np.array_equal(out['gt_difficulty'], [0, 1, 3])


def test_dropout_count_subset_and_order():
    raw, _, _ = _scene(4)
    np.random.seed(0)
    out = PointDropout(drop_ratio=0.25)(_copy(raw))
    n = len(raw['points'])
    assert len(out['points']) == n - round(0.25 * n)
    assert out['num_dropped_points'] == round(0.25 * n)
    ids = out['points'][:, 3].astype(int)
    assert (np.diff(ids) > 0).all()  # kept rows in their order, no duplicates
    assert np.array_equal(out['points'], raw['points'][ids])
    for key in BOX_KEYS + ('lidar_aug_matrix', ):
        assert np.array_equal(out[key], raw[key])
    out = PointDropout(drop_ratio=0.5, prob=0.0)(_copy(raw))
    assert np.array_equal(out['points'], raw['points']) and out['num_dropped_points'] == 0


def test_jitter_stays_within_clip_and_leaves_boxes():
    raw, _, _ = _scene(5)
    np.random.seed(0)
    out = PointJitter(std=0.05, clip=0.04)(_copy(raw))
    delta = out['points'][:, :3] - raw['points'][:, :3]
    assert np.abs(delta).max() <= 0.04 + 1e-5
    assert np.isclose(np.abs(delta).max(), 0.04, atol=1e-4)  # the clip is reached
    assert (np.abs(delta) > 0).mean() > 0.99
    assert np.array_equal(out['points'][:, 3], raw['points'][:, 3])
    for key in BOX_KEYS + ('lidar_aug_matrix', ):
        assert np.array_equal(out[key], raw[key])
    np.random.seed(0)
    delta = PointJitter(std=0.01, clip=1.0)(_copy(raw))['points'][:, :3] - raw['points'][:, :3]
    assert 0.008 < delta.std() < 0.012 and abs(delta.mean()) < 0.002


def test_shuffle_permutes_rows():
    raw, _, _ = _scene(6)
    np.random.seed(0)
    out = PointShuffle()(_copy(raw))
    ids = out['points'][:, 3].astype(int)
    assert not np.array_equal(ids, np.arange(len(ids)))
    assert np.array_equal(np.sort(ids), np.arange(len(ids)))
    assert np.array_equal(out['points'], raw['points'][ids])
    for key in BOX_KEYS + ('lidar_aug_matrix', ):
        assert np.array_equal(out[key], raw[key])


def test_pack_shapes_dtypes_metainfo():
    raw, _, _ = _scene(7, num_boxes=4)
    np.random.seed(0)
    res = RandomFlip3D(1.0)(_copy(raw))
    packed = PackPointCloudInputs()(res)
    points = packed['inputs']['points']
    assert points.dtype == torch.float32 and points.shape == raw['points'].shape
    sample = packed['data_samples']
    assert isinstance(sample, PointCloudDataSample)
    gt, ign = sample.gt_instances_3d, sample.ignored_instances_3d
    keep = ~raw['gt_ignore_flags']
    assert gt.bboxes_3d.dtype == torch.float32 and gt.bboxes_3d.shape == (2, 7)
    assert torch.equal(gt.bboxes_3d, torch.from_numpy(res['gt_bboxes_3d'][keep]))
    assert gt.labels_3d.dtype == torch.long and gt.difficulty.tolist() == [0, 2]
    assert ign.difficulty.tolist() == [1, 3] and ign.bboxes_3d.shape == (2, 7)
    meta = sample.metainfo
    assert meta['frame_id'] == '000007' and meta['sample_idx'] == 7
    assert meta['lidar_path'] == 'points/000007.bin' and meta['num_points'] == len(raw['points'])
    assert np.array_equal(meta['lidar_aug_matrix'], np.diag([1.0, -1, 1, 1]))
    assert meta['flip_y'] is True and meta['flip_x'] is False

    res = _copy(raw)
    del res['gt_ignore_flags'], res['gt_difficulty']
    sample = PackPointCloudInputs()(res)['data_samples']
    assert len(sample.gt_instances_3d) == 4 and 'difficulty' not in sample.gt_instances_3d
    assert len(sample.ignored_instances_3d) == 0
    assert sample.ignored_instances_3d.bboxes_3d.shape == (0, 7)
    empty = dict(points=np.zeros((0, 4), np.float32), gt_bboxes_3d=np.zeros((0, 7), np.float32),
                 gt_labels_3d=np.zeros(0, np.int64))
    sample = PackPointCloudInputs()(empty)['data_samples']
    assert sample.gt_instances_3d.bboxes_3d.shape == (0, 7)
    with pytest.raises(ValueError, match='cannot pack'):
        PackPointCloudInputs(keys=('points', 'img'))


def test_build_repr_and_bad_arguments():
    cfgs = [dict(type='RandomFlip3D', flip_y_ratio=0.3),
            dict(type='GlobalRotScaleTrans', rot_range=0.5),
            dict(type='PointsRangeFilter', point_cloud_range=PCR),
            dict(type='ObjectRangeFilter', point_cloud_range=PCR),
            dict(type='ObjectNameFilter', classes=['Car']),
            dict(type='ObjectMinPointsFilter', min_points=2),
            dict(type='PointDropout', drop_ratio=0.2), dict(type='PointJitter'),
            dict(type='PointShuffle'), dict(type='PackPointCloudInputs')]
    for cfg in cfgs:
        t = TRANSFORMS.build(dict(cfg, type='ssl_det.' + cfg['type']))
        assert repr(t).startswith(cfg['type'] + '(')
    assert 'flip_y_ratio=0.3' in repr(RandomFlip3D(0.3))
    assert 'rot_range=(-0.5, 0.5)' in repr(GlobalRotScaleTrans(0.5))
    for bad in (lambda: RandomFlip3D(1.5), lambda: GlobalRotScaleTrans(scale_range=(0, 1)),
                lambda: PointsRangeFilter([0, 0, 0, 1, 1]),
                lambda: ObjectRangeFilter([1, 0, 0, 0, 1, 1]), lambda: PointDropout(1.0),
                lambda: PointJitter(std=-1), lambda: ObjectMinPointsFilter(1.5)):
        with pytest.raises(ValueError):
            bad()
