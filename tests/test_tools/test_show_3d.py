"""tools/analysis/show_3d.py and ssl_det.visualization.bev: boxes drawn where they are."""
import json
import os.path as osp
import pickle

import matplotlib.image
import numpy as np
import open3d as o3d
import pytest
import torch
from mmengine.structures import InstanceData

from ssl_det.datasets.point_cloud_io import dump_info_file, save_points
from ssl_det.structures import PointCloudDataSample, box3d_corners
from ssl_det.visualization import (BOX_EDGES, GT_COLOR, bev_figure, class_color, draw_bev,
                                   render_perspective_png)
from ssl_det.visualization.bev import BACKGROUND, GREY, MARGINS_PX
from tools.analysis import show_3d

RANGE = [0, -16, -3, 40, 16, 1]          # 40 x 32 m: 20 px per metre at image_size 800
GT_A = [10.0, 0.0, -0.9, 4.0, 2.0, 1.6, 0.0]
GT_B = [25.0, 8.0, -0.9, 4.0, 2.0, 1.6, np.pi / 2]   # empty, heading +y
PRED_HIGH = [20.0, -8.0, -0.9, 4.0, 2.0, 1.6, 0.5]   # Car, 0.9: drawn
PRED_LOW = [30.0, -5.0, -0.8, 1.8, 0.6, 1.7, 0.0]    # Cyclist, 0.1: under --score-thr
POINTS = np.array([[11.8, 0, -0.9, 0.5], [8.2, 0, -0.9, 0.5], [10, 0.5, -0.9, 0.5],
                   [2, -12, -1.7, 0.1], [35, 12, -1.7, 0.1], [38, -14, -1.7, 0.1]], np.float32)


def _scene(root):
    save_points(str(root / 'points' / 'a.bin'), POINTS)
    save_points(str(root / 'points' / 'b.bin'), POINTS[:2])
    info = dict(metainfo=dict(classes=['Car', 'Pedestrian', 'Cyclist'], point_dim=4,
                              point_cloud_range=RANGE),
                data_list=[dict(frame_id='a', lidar_path='points/a.bin',
                                instances=[dict(bbox_3d=GT_A, label_name='Car'),
                                           dict(bbox_3d=GT_B, label_name='Car')]),
                           dict(frame_id='b', lidar_path='points/b.bin', instances=[])])
    dump_info_file(info, str(root / 'infos.json'))
    preds = {'a': dict(bboxes_3d=[PRED_HIGH, PRED_LOW], scores_3d=[0.9, 0.1],
                       labels_3d=[0, 2])}
    with open(root / 'preds.json', 'w') as f:
        json.dump(preds, f)
    return str(root / 'infos.json'), str(root / 'preds.json')


def _patch(image, ax, x, y):
    """The 3 x 3 pixels (RGB floats) around the metre position (x, y)."""
    px, py = ax.transData.transform((x, y))
    row, col = int(image.shape[0] - py), int(px)
    return image[row - 1:row + 2, col - 1:col + 2, :3].reshape(-1, 3)


def _has(patch, rgb, tol=0.12):
    return bool((np.abs(patch - np.asarray(rgb)).max(axis=1) < tol).any())


def test_bev_png_draws_boxes_where_they_are(tmp_path, capsys):
    info, preds = _scene(tmp_path)
    out = show_3d.main([info, '--index', '0', '--pred', preds, '--out-dir',
                        str(tmp_path / 'vis')])
    assert out['bev'] == str(tmp_path / 'vis' / 'a_bev.png')
    assert (out['num_pred'], out['num_pred_drawn']) == (2, 1)
    assert 'predictions: 1 of 2 drawn (score >= 0.3)' in capsys.readouterr().out
    image = matplotlib.image.imread(out['bev'])[..., :3]
    # the layout depends only on the range: the same figure gives the metres-to-pixels map
    fig, ax = bev_figure(np.zeros((0, 4)), point_cloud_range=RANGE)
    m = MARGINS_PX
    assert image.shape[:2] == (640 + m['bottom'] + m['top'], 800 + m['left'] + m['right'])
    assert fig.canvas.get_width_height() == (image.shape[1], image.shape[0])
    assert np.allclose(ax.transData.transform((1, 1)) - ax.transData.transform((0, 0)), 20)

    # GT B (heading +y): side edge at x = 24, heading tick from (25, 8) to (25, 10) only
    assert _has(_patch(image, ax, 24.0, 8.0), GT_COLOR)
    assert _has(_patch(image, ax, 25.0, 9.5), GT_COLOR)
    assert np.allclose(_patch(image, ax, 25.0, 6.5), BACKGROUND, atol=0.02)
    # GT A's side edge, the drawn prediction's side edge in the Car colour
    assert _has(_patch(image, ax, 10.0, 1.0), GT_COLOR)
    c, s = np.cos(PRED_HIGH[6]), np.sin(PRED_HIGH[6])
    assert _has(_patch(image, ax, 20.0 - s, -8.0 + c), class_color(0))
    # the low-score prediction is not drawn
    assert np.allclose(_patch(image, ax, 30.0, -5.3), BACKGROUND, atol=0.02)


def test_ply_reads_back_with_open3d(tmp_path):
    info, preds = _scene(tmp_path)
    out = show_3d.main([info, '--frame', 'a', '--pred', preds, '--out-dir', str(tmp_path)])
    cloud = o3d.io.read_point_cloud(out['ply'])
    vertices = np.asarray(cloud.points)
    assert len(vertices) == len(POINTS) + 8 * 3  # points, then 2 GT and 1 drawn prediction
    assert np.allclose(vertices[:len(POINTS)], POINTS[:, :3], atol=1e-4)
    assert np.allclose(vertices[len(POINTS):len(POINTS) + 8], box3d_corners(np.array([GT_A]))[0],
                       atol=1e-4)
    lines = o3d.io.read_line_set(out['ply'])
    assert len(lines.lines) == 3 * len(BOX_EDGES)
    assert np.array_equal(np.asarray(lines.lines)[:len(BOX_EDGES)],
                          len(POINTS) + np.asarray(BOX_EDGES))
    assert np.allclose(np.asarray(lines.colors)[0], GT_COLOR, atol=1 / 255)
    assert np.allclose(np.asarray(lines.colors)[-1], class_color(0), atol=1 / 255)


def test_prediction_file_forms(tmp_path, capsys):
    info, preds_json = _scene(tmp_path)
    by_frame = show_3d.load_predictions(preds_json)
    sample = PointCloudDataSample(metainfo=dict(frame_id='a'))
    sample.pred_instances_3d = InstanceData(
        bboxes_3d=torch.tensor([PRED_HIGH, PRED_LOW]), scores_3d=torch.tensor([0.9, 0.1]),
        labels_3d=torch.tensor([0, 2]))
    with open(tmp_path / 'samples.pkl', 'wb') as f:
        pickle.dump([sample.to_dict()], f)
    from_samples = show_3d.load_predictions(str(tmp_path / 'samples.pkl'))
    assert list(by_frame) == list(from_samples) == ['a']
    for key in show_3d.PRED_KEYS:
        assert np.allclose(by_frame['a'][key], from_samples['a'][key])
    assert by_frame['a']['bboxes_3d'].shape == (2, 7)
    # a frame the file does not cover: said, and the ground truth still drawn
    out = show_3d.main([info, '--frame', 'b', '--pred', preds_json, '--out-dir',
                        str(tmp_path)])
    assert osp.getsize(out['bev']) > 0 and out['num_pred'] == 0
    assert 'has no predictions for frame b' in capsys.readouterr().out
    with open(tmp_path / 'bad.json', 'w') as f:
        json.dump({'a': {'bboxes_3d': [PRED_HIGH], 'scores_3d': [0.5]}}, f)
    with pytest.raises(SystemExit, match=r'bad\.json \(frame a\).*labels_3d'):
        show_3d.main([info, '--pred', str(tmp_path / 'bad.json'), '--out-dir', str(tmp_path)])
    with pytest.raises(SystemExit, match="no frame 'z'"):
        show_3d.main([info, '--frame', 'z', '--out-dir', str(tmp_path)])


def test_styles_solid_dashed_grey():
    boxes = np.array([[10, -8, -1, 4, 2, 1.6, 0], [10, 0, -1, 4, 2, 1.6, 0],
                      [10, 8, -1, 4, 2, 1.6, 0]])
    scene = dict(pred_boxes=boxes, pred_labels=[1, 1, 1], pred_scores=[0.9, 0.5, 0.2],
                 point_cloud_range=[0, -16, 40, 16])
    image = draw_bev(np.zeros((0, 4)), styles=['solid', 'dashed', 'grey'], **scene) / 255.0
    _, ax = bev_figure(np.zeros((0, 4)), **scene)
    # the side edges y = -7, 1, 9 along x in [8, 12]
    along = np.linspace(8.3, 11.7, 40)
    color = lambda y, rgb: [_has(_patch(image, ax, x, y), rgb) for x in along]  # noqa: E731
    solid, dashed, grey = color(-7, class_color(1)), color(1, class_color(1)), color(9, GREY)
    assert all(solid) and 0.2 < np.mean(dashed) < 0.95 and 0 < np.mean(grey) < 0.95
    assert not any(color(9, class_color(1)))
    with pytest.raises(ValueError, match='styles\\[1\\]'):
        draw_bev(np.zeros((0, 4)), styles=['solid', 'wavy', 'grey'], **scene)
    with pytest.raises(ValueError, match='styles\\[0\\]'):
        draw_bev(np.zeros((0, 4)), styles=[{'linewidth': 3}, 'solid', 'grey'], **scene)
    with pytest.raises(ValueError, match='styles has 2 entries for 3 pred_boxes'):
        draw_bev(np.zeros((0, 4)), styles=['solid', 'grey'], **scene)


def test_perspective_renders_or_says_why(tmp_path, capsys):
    info, _ = _scene(tmp_path)
    out = show_3d.main([info, '--out-dir', str(tmp_path), '--perspective'])
    result = out['perspective']
    printed = capsys.readouterr().out
    assert osp.getsize(out['bev']) > 0 and osp.getsize(out['ply']) > 0
    if result:
        assert osp.getsize(tmp_path / 'a_perspective.png') > 0
    else:
        assert not result.ok and result.reason
        assert f'open3d could not render ({result.reason})' in printed
    # in-process, a failure is caught as well (no crash)
    direct = render_perspective_png(str(tmp_path / 'p.png'), POINTS, gt_boxes=[GT_A],
                                    isolate=False)
    assert bool(direct) == direct.ok and (direct.ok or direct.reason)


def test_bev_points_are_drawn_at_their_x_and_y():
    """The BEV's points land at their own (x, y): x to the right, y up, not swapped."""
    xs, ys = np.meshgrid(np.linspace(9.5, 10.5, 11), np.linspace(4.5, 5.5, 11))
    points = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, -1.0), np.zeros(xs.size)], 1)
    image = draw_bev(points, point_cloud_range=RANGE) / 255.0
    _, ax = bev_figure(points, point_cloud_range=RANGE)
    assert not np.allclose(_patch(image, ax, 10.0, 5.0), BACKGROUND, atol=0.02)
    assert np.allclose(_patch(image, ax, 5.0, 10.0), BACKGROUND, atol=0.02)


def test_pseudo_label_picture_draws_ignored_boxes_grey():
    """PseudoLabelVisHook's BEV picture of a strong view: the pseudo box solid in its class
    colour, the ignored box grey and dotted, not in its class colour, each where it is."""
    from ssl_det.engine.hooks import PseudoLabelVisHook
    sample = PointCloudDataSample()
    sample.gt_instances_3d = InstanceData(bboxes_3d=torch.tensor([[10., -8, -1, 4, 2, 1.6, 0]]),
                                          labels_3d=torch.tensor([0]))
    sample.ignored_instances_3d = InstanceData(
        bboxes_3d=torch.tensor([[10., 8, -1, 4, 2, 1.6, 0]]), labels_3d=torch.tensor([1]))
    image = PseudoLabelVisHook.draw_3d(torch.zeros(0, 4), sample, ('Car', 'Pedestrian'),
                                       RANGE) / 255.0
    _, ax = bev_figure(np.zeros((0, 4)), point_cloud_range=RANGE)
    along = np.linspace(8.3, 11.7, 40)  # the side edges y = -7 and y = 9
    assert all(_has(_patch(image, ax, x, -7), class_color(0)) for x in along)
    grey = [_has(_patch(image, ax, x, 9), GREY) for x in along]
    assert 0 < np.mean(grey) < 0.95
    assert not any(_has(_patch(image, ax, x, 9), class_color(1)) for x in along)
