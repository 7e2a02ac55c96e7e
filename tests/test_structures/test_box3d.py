"""The 3D box convention: conversions round-trip, and a box maps through an augmentation
matrix together with its points (direction checked with non-symmetric maps)."""
import numpy as np
import pytest
import torch

from ssl_det.structures import (box3d_corners, camera_to_lidar, check_boxes3d,
                                from_mmdet3d_lidar, kitti_label_to_camera_boxes,
                                lidar_to_camera, points_in_boxes, to_mmdet3d_lidar,
                                transform_boxes3d, transform_points, weak_to_strong_matrix)


def random_boxes(rng, n=6):
    return np.c_[rng.uniform(0, 40, n), rng.uniform(-20, 20, n), rng.uniform(-2, 0, n),
                 rng.uniform(0.5, 5, n), rng.uniform(0.4, 2, n), rng.uniform(1, 2, n),
                 rng.uniform(-np.pi, np.pi, n)]


def inner_points(rng, box, n=200, shrink=0.95):
    local = rng.uniform(-0.5, 0.5, (n, 3)) * box[3:6] * shrink
    c, s = np.cos(box[6]), np.sin(box[6])
    return local @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + box[:3]


def kitti_calib():
    # A KITTI-like calibration: near the axis permutation, with a small extra rotation.
    a = 0.02
    tweak = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :3] = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]]) @ tweak
    velo_to_cam[:3, 3] = [0.004, -0.076, -0.27]
    rect = np.eye(4)
    b = 0.01
    rect[:3, :3] = [[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]]
    return rect @ velo_to_cam


def wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def test_mmdet3d_lidar_round_trip_moves_z_by_half_the_height():
    boxes = random_boxes(np.random.default_rng(0))
    bottom = to_mmdet3d_lidar(boxes)
    np.testing.assert_allclose(bottom[:, 2], boxes[:, 2] - boxes[:, 5] / 2)
    np.testing.assert_allclose(from_mmdet3d_lidar(bottom), boxes)
    t = torch.tensor(boxes, dtype=torch.float32)
    assert isinstance(from_mmdet3d_lidar(t), torch.Tensor)


def test_camera_round_trip_and_points_stay_inside():
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng)
    lidar2cam = kitti_calib()
    cam = lidar_to_camera(boxes, lidar2cam)
    back = camera_to_lidar(cam, lidar2cam)
    np.testing.assert_allclose(back[:, :6], boxes[:, :6], atol=1e-9)
    np.testing.assert_allclose(wrap(back[:, 6] - boxes[:, 6]), 0, atol=1e-9)
    # Independent of the formulas: the points of each box, moved to the camera frame by the
    # calibration, sit around the camera box's bottom centre - h/2 along camera y (down).
    for box, cbox in zip(boxes, cam):
        pts = inner_points(rng, box, n=20000)
        pts_c = pts @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]
        centre = pts_c.mean(axis=0)
        np.testing.assert_allclose(centre, cbox[:3] - [0, cbox[4] / 2, 0], atol=0.06)


def test_kitti_ideal_calibration_matches_the_known_yaw_relation():
    # With the ideal axis permutation, LiDAR yaw = -ry - pi/2 (the relation mmdet3d uses).
    ideal = np.eye(4)
    ideal[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    cam = kitti_label_to_camera_boxes([[1.5, 1.6, 3.9]], [[2.0, 1.7, 20.0]], [0.3])
    np.testing.assert_allclose(cam[0, 3:6], [3.9, 1.5, 1.6])  # (l, h, w)
    lidar = camera_to_lidar(cam, ideal)
    np.testing.assert_allclose(lidar[0, :3], [20.0, -2.0, -1.7 + 0.75])
    np.testing.assert_allclose(lidar[0, 3:6], [3.9, 1.6, 1.5])
    np.testing.assert_allclose(wrap(lidar[0, 6] - (-0.3 - np.pi / 2)), 0, atol=1e-12)


def rotation(theta, scale=1.0, t=(0, 0, 0), flip_y=False):
    m = np.eye(4)
    m[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    if flip_y:
        m = np.diag([1, -1, 1, 1]) @ m
    m[:3, :3] *= scale
    m[:3, 3] = t
    return m


@pytest.mark.parametrize('flip', [False, True])
def test_box_and_points_map_together_in_the_right_direction(flip):
    rng = np.random.default_rng(2)
    boxes = random_boxes(rng)
    mat = rotation(0.7, 1.08, (1.5, -2.0, 0.3), flip_y=flip)
    moved = transform_boxes3d(boxes, mat)
    for box, new in zip(boxes, moved):
        pts = inner_points(rng, box)
        # the front face (+dx/2 side) stays the front: catches a yaw off by pi
        front = box[:3] + 0.45 * box[3] * np.array([np.cos(box[6]), np.sin(box[6]), 0])
        both = transform_points(np.vstack([pts, front]), mat)
        assert points_in_boxes(both, new[None]).all()
        rel = both[-1, :2] - new[:2]
        assert rel @ [np.cos(new[6]), np.sin(new[6])] > 0.4 * new[3]
        # and the inverse direction would not fit: the points miss the inversely mapped box
        wrong = transform_boxes3d(box[None], np.linalg.inv(mat))
        assert not points_in_boxes(both, wrong).all()
    np.testing.assert_allclose(moved[:, 3:6], boxes[:, 3:6] * 1.08)


def test_weak_to_strong_matrix_maps_weak_boxes_onto_strong_boxes():
    boxes = random_boxes(np.random.default_rng(3))
    weak, strong = rotation(0.3, 1.0, (1, 0, 0), flip_y=True), rotation(-0.5, 0.95, (0, 2, 0))
    w2s = weak_to_strong_matrix(weak, strong)
    np.testing.assert_allclose(transform_boxes3d(transform_boxes3d(boxes, weak), w2s),
                               transform_boxes3d(boxes, strong), atol=1e-9)


def test_shear_is_refused_and_bad_boxes_are_named():
    shear = np.eye(4)
    shear[0, 1] = 0.3
    with pytest.raises(ValueError, match='similarity'):
        transform_boxes3d(random_boxes(np.random.default_rng(4)), shear)
    with pytest.raises(ValueError, match='non-positive size.*frame 7'):
        check_boxes3d(np.array([[0, 0, 0, 1, 0, 1, 0.0]]), where='frame 7')
    with pytest.raises(ValueError, match='NaN'):
        check_boxes3d(np.array([[0, np.nan, 0, 1, 1, 1, 0.0]]))


def test_corners_lie_on_the_box_faces():
    box = np.array([[1.0, 2.0, 0.5, 4.0, 2.0, 1.0, 0.4]])
    corners = box3d_corners(box)[0]
    assert points_in_boxes(corners, box, margin=1e-9).all()
    assert not points_in_boxes(corners * 1.01, box).all()
    np.testing.assert_allclose(np.linalg.norm(corners[0] - corners[2]), np.hypot(4, 2))


@pytest.mark.parametrize('margin', [0.0, 0.25])
def test_points_in_boxes_culled_path_equals_every_pair(margin):
    """Many points and few boxes take the culled path (a slab of x-sorted points per box,
    then the exact test): the same (N, M) answer as testing every pair, also for points on
    the faces, edges and corners of rotated boxes (where a bound cut too tight would drop
    them) and for a BEV grid against flattened boxes (CenterHead3D's ignored regions)."""
    from ssl_det.structures.box3d import _points_in_boxes_dense
    rng = np.random.default_rng(5)
    boxes = random_boxes(rng, 40)
    boxes[:4, 6] = [0.0, np.pi / 2, np.pi, -np.pi / 4]  # axis-aligned and diagonal
    # points on every box's faces, edges and corners (grown by the margin), and at random
    signs = rng.choice([-1.0, 0.0, 1.0], (40, 60, 3))
    signs[:, :8] = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, 8).T
    local = signs * (boxes[:, None, 3:6] / 2 + margin)
    c, s = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    on = np.stack([c * local[..., 0] - s * local[..., 1] + boxes[:, None, 0],
                   s * local[..., 0] + c * local[..., 1] + boxes[:, None, 1],
                   local[..., 2] + boxes[:, None, 2]], axis=-1).reshape(-1, 3)
    cloud = np.c_[rng.uniform(0, 40, 20000), rng.uniform(-20, 20, 20000), rng.uniform(-3, 1, 20000)]
    points = np.vstack([on, cloud])
    expected = _points_in_boxes_dense(points, boxes, margin)
    got = points_in_boxes(points, boxes, margin=margin)
    assert points.shape[0] * 40 > 16384  # the culled path ran
    assert got.shape == expected.shape and (got == expected).all()
    assert 0.3 < expected[:len(on)].mean() * 40 < 1.0  # face points: about half land inside
    # torch in, torch out, same answer
    got_t = points_in_boxes(torch.from_numpy(points).float(), torch.from_numpy(boxes).float(),
                            margin=margin)
    dense_t = _points_in_boxes_dense(torch.from_numpy(points).float().numpy().astype(np.float64),
                                     torch.from_numpy(boxes).float().numpy().astype(np.float64),
                                     margin)
    assert torch.equal(got_t, torch.from_numpy(dense_t))
    # a BEV grid (z = 0) against boxes flattened to z = 0, dz = 1
    ys, xs = np.meshgrid(np.arange(80) * 0.5 - 20, np.arange(80) * 0.5, indexing='ij')
    grid = np.c_[xs.ravel() + 0.25, ys.ravel() + 0.25, np.zeros(xs.size)]
    flat = boxes[:6].copy()
    flat[:, 2], flat[:, 5] = 0, 1
    assert (points_in_boxes(grid, flat, margin) == _points_in_boxes_dense(grid, flat, margin)).all()


def test_match_boxes_bev_needs_the_class_and_the_iou_of_the_labeled_boxs_class():
    from ssl_det.structures import match_boxes_bev
    gt = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],
                       [10.0, 0.0, 0.0, 0.8, 0.6, 1.7, 0.0]])
    shifted = [[1.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.0],    # IoU 3/5 with the car
               [10.3, 0.0, 0.0, 0.8, 0.6, 1.7, 0.0]]   # IoU 0.5/1.1 with the pedestrian
    boxes = torch.tensor(shifted + shifted)
    labels = torch.tensor([0, 1, 1, 0])  # the last two: the other class
    iou, finds = match_boxes_bev(boxes, labels, gt, torch.tensor([0, 1]), 0.5)
    assert iou[0, 0] == pytest.approx(0.6) and iou[1, 1] == pytest.approx(0.5 / 1.1)
    assert finds.tolist() == [[True, False], [False, False], [False, False], [False, False]]
    # one threshold a class, read at the labeled box's class
    _, finds = match_boxes_bev(boxes, labels, gt, torch.tensor([0, 1]), [0.7, 0.4])
    assert finds.tolist() == [[False, False], [False, True], [False, False], [False, False]]
    iou, finds = match_boxes_bev(boxes, labels, gt[:0], torch.zeros(0), 0.5)
    assert iou.shape == finds.shape == (4, 0)


def test_top_gaps_measure_from_the_highest_point_inside_each_box():
    from ssl_det.structures import top_gaps
    # a box turned 45 degrees: (1.2, 0, ...) lies inside its footprint, (0.9, 0.9) outside
    boxes = torch.tensor([[0.0, 0.0, 0.0, 2.0, 0.5, 2.0, np.pi / 4],
                          [10.0, 0.0, 0.5, 1.0, 1.0, 3.0, 0.0],
                          [20.0, 0.0, 0.0, 1.0, 1.0, 1.5, 0.0]], dtype=torch.float64)
    points = torch.tensor([[0.5, 0.5, 0.7, 1.0],    # inside box 0, 0.3 below its top
                           [0.1, 0.1, -0.9, 1.0],   # inside box 0, lower
                           [0.9, -0.9, 0.95, 1.0],  # outside box 0's turned footprint
                           [0.0, 0.0, 1.5, 1.0],    # above box 0: not inside
                           [10.0, 0.2, -0.5, 1.0]])  # box 1: 2.5 m below its top at 2.0
    gaps = top_gaps(points, boxes)
    assert isinstance(gaps, torch.Tensor)
    # box 2 holds no point: its whole height
    np.testing.assert_allclose(gaps.numpy(), [0.3, 2.5, 1.5], atol=1e-6)
    np.testing.assert_allclose(top_gaps(points.numpy(), boxes.numpy()), [0.3, 2.5, 1.5],
                               atol=1e-6)


def test_top_support_is_one_at_a_reached_top_and_falls_with_the_gap():
    from ssl_det.structures import top_support
    boxes = np.array([[0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 0.0],
                      [5.0, 0.0, 0.0, 1.0, 1.0, 2.0, 0.0]])
    points = np.array([[0.0, 0.0, 1.0, 1.0],      # at box 0's top
                       [5.0, 0.0, -0.5, 1.0]])    # 1.5 m below box 1's top
    np.testing.assert_allclose(top_support(points, boxes, 0.5), [1.0, np.exp(-1.5)])
