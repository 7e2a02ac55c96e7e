"""PillarDetector: the parts fit together, it overfits one scene, and the heatmap's ignore
regions and rotated NMS do what they say."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

import ssl_det.models  # noqa: F401  (registers the parts)
from ssl_det.models.point_cloud import rotated_nms
from ssl_det.registry import MODELS
from ssl_det.structures import PointCloudDataSample

PCR = [0, -12.8, -3, 25.6, 12.8, 1]
VOXEL = [0.4, 0.4, 4]


def small_detector(**head):
    cfg = dict(
        type='PillarDetector',
        voxelizer=dict(type='PillarVoxelizer', voxel_size=VOXEL, point_cloud_range=PCR),
        voxel_encoder=dict(type='PillarFeatureNet', in_channels=4, feat_channels=16,
                           voxel_size=VOXEL, point_cloud_range=PCR),
        middle_encoder=dict(type='PillarScatter', in_channels=16),
        backbone=dict(type='BEVBackbone', in_channels=16, out_channels=(16, 32),
                      layers=(1, 1), strides=(2, 2)),
        neck=dict(type='BEVNeck', in_channels=(16, 32), out_channels=(32, 32),
                  upsample_strides=(1, 2)),
        bbox_head=dict(type='CenterHead3D', in_channels=64, num_classes=3,
                       point_cloud_range=PCR, voxel_size=VOXEL, out_size_factor=2, **head))
    return MODELS.build(cfg)


def box_surface_points(rng, box, n):
    local = rng.uniform(-0.5, 0.5, (n, 3)) * box[3:6]
    c, s = np.cos(box[6]), np.sin(box[6])
    return local @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + box[:3]


def scene(seed=0):
    rng = np.random.default_rng(seed)
    boxes = np.array([[8.0, 3.0, -0.95, 4.0, 1.7, 1.5, 0.6],
                      [14.0, -5.0, -0.8, 0.7, 0.6, 1.8, -1.0],
                      [18.0, 4.0, -0.85, 1.8, 0.6, 1.7, 2.5]], np.float32)
    parts = [box_surface_points(rng, b, 200) for b in boxes]
    ground = np.c_[rng.uniform(0, 25.6, 3000), rng.uniform(-12.8, 12.8, 3000),
                   np.full(3000, -1.7)]
    pts = np.concatenate(parts + [ground])
    pts = np.c_[pts, rng.uniform(0, 1, len(pts))].astype(np.float32)
    sample = PointCloudDataSample()
    sample.gt_instances_3d = InstanceData(bboxes_3d=torch.from_numpy(boxes),
                                          labels_3d=torch.tensor([0, 1, 2]))
    return torch.from_numpy(pts), sample


@pytest.mark.parametrize('heading', ['sincos', 'double_angle'])
def test_overfits_one_scene_and_decodes_boxes_near_the_truth(heading):
    torch.manual_seed(0)
    model = small_detector(heading=heading)
    points, sample = scene()
    inputs = dict(points=[points, points])
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    # the lr drops for the last third, as the configs' schedules do: at a constant 3e-3 the
    # L1 box codes keep oscillating (a car's length 3.9-4.4 between steps 40 and 100), and
    # where step 60 lands depended on the threads' summation order (2026-12-04)
    sched = torch.optim.lr_scheduler.MultiStepLR(optim, [40], gamma=0.1)
    model.train()
    first = None
    for _ in range(60):
        losses = model.loss(inputs, [sample, sample])
        total = sum(losses.values())
        assert torch.isfinite(total)
        first = total.item() if first is None else first
        optim.zero_grad()
        total.backward()
        optim.step()
        sched.step()
    assert total.item() < 0.1 * first
    model.eval()
    pred = model.predict(dict(points=[points]), [sample.clone()])[0].pred_instances_3d
    gt = sample.gt_instances_3d
    assert len(pred) >= 3
    for box, label in zip(gt.bboxes_3d, gt.labels_3d):
        dist = (pred.bboxes_3d[:, :2] - box[:2]).norm(dim=1)
        j = int(dist.argmin())
        assert dist[j] < 0.4, (box, pred.bboxes_3d)
        assert pred.labels_3d[j] == label
        assert pred.scores_3d[j] > 0.3
        assert torch.allclose(pred.bboxes_3d[j, 2:6], box[2:6], atol=0.3)
        dyaw = torch.remainder(pred.bboxes_3d[j, 6] - box[6] + np.pi, 2 * np.pi) - np.pi
        assert abs(float(dyaw)) < 0.2


def test_ignored_boxes_leave_their_region_out_of_the_heatmap_loss():
    model = small_detector()
    _, sample = scene()
    gt = sample.gt_instances_3d
    ignored = InstanceData(bboxes_3d=torch.tensor([[20.0, -8.0, -1.0, 3.0, 3.0, 1.5, 0.3]]),
                           labels_3d=torch.tensor([0]))
    heat, weight, codes, index, _ = model.bbox_head.get_targets(gt, (32, 32), ignored)
    cell = 0.8
    ix, iy = int((20.0 - PCR[0]) / cell), int((-8.0 - PCR[1]) / cell)
    assert weight[iy, ix] == 0  # the ignored box's centre cell
    assert weight.sum() < weight.numel() - 8  # a whole region, not one cell
    assert weight[0, 0] == 1  # far away: background as usual
    assert len(codes) == 3 and heat.amax() == 1
    _, weight_none, *_ = model.bbox_head.get_targets(gt, (32, 32), None)
    assert bool((weight_none == 1).all())


def test_rotated_nms_keeps_the_best_of_overlapping_same_class_boxes():
    boxes = torch.tensor([[5.0, 0, 0, 4, 2, 1.5, 0.1], [5.2, 0.1, 0, 4, 2, 1.5, 0.15],
                          [5.0, 0, 0, 4, 2, 1.5, 0.1], [20, 0, 0, 4, 2, 1.5, 0]])
    scores = torch.tensor([0.5, 0.9, 0.8, 0.3])
    labels = torch.tensor([0, 0, 1, 0])
    keep = rotated_nms(boxes, scores, labels, iou_thr=0.1)
    assert keep.tolist() == [1, 2, 3]


@pytest.mark.parametrize('bad', [[0, -12.8, -3, 25.5, 12.8, 1]])
def test_range_must_be_whole_pillars(bad):
    from ssl_det.models.point_cloud import grid_shape
    with pytest.raises(ValueError, match='whole number of voxels'):
        grid_shape(bad, VOXEL)


def random_frame(gen, n):
    boxes = torch.rand(n, 7, generator=gen)
    boxes[:, 0] = boxes[:, 0] * 30 - 2  # some centres off the map
    boxes[:, 1] = boxes[:, 1] * 30 - 15
    boxes[:, 3:6] = boxes[:, 3:6] * 5 + 0.2
    boxes[:, 6] = boxes[:, 6] * 6
    return boxes


def test_targets_equal_the_per_box_reference():
    # the vectorised targets against mmdet's gen_gaussian_target one box at a time: crowded
    # frames (overlapping Gaussians of one class), soft boxes, ignored boxes, off-map centres
    head = small_detector().bbox_head
    gen = torch.Generator().manual_seed(0)
    soft_cells = 0
    for trial in range(60):
        n = trial % 25
        boxes = random_frame(gen, n)
        gt = InstanceData(bboxes_3d=boxes, labels_3d=torch.randint(0, 3, (n,), generator=gen))
        if trial % 2:
            gt.weights = torch.where(torch.rand(n, generator=gen) < 0.5,
                                     torch.rand(n, generator=gen), torch.ones(n))
        ignored = None
        if trial % 3 == 0 and n:
            ignored = InstanceData(bboxes_3d=boxes[:2] + 1, labels_3d=gt.labels_3d[:2])
        fast = head.get_targets(gt, (32, 32), ignored)
        ref = head.get_targets_loop(gt, (32, 32), ignored)
        assert torch.equal(fast[0], ref[0])
        torch.testing.assert_close(fast[1], ref[1], rtol=1e-6, atol=0)
        soft_cells += int(((ref[1] > 0) & (ref[1] < 1)).sum())
        for got, want in zip(fast[2:], ref[2:]):
            assert torch.equal(got, want)
    assert soft_cells > 100  # the soft weights were exercised


def test_a_soft_box_weights_its_heatmap_region_and_its_code_loss():
    # a middle-tier pseudo box of weight 0.4: code weight 0.4 and loss weight 0.4 on its
    # Gaussian's cells, 1 elsewhere; its box-code loss is 0.4 of the same box's at weight 1
    model = small_detector()
    head = model.bbox_head
    box = torch.tensor([[10.0, 2.0, -1.0, 4.0, 1.7, 1.5, 0.3]])
    soft = InstanceData(bboxes_3d=box, labels_3d=torch.tensor([1]), weights=torch.tensor([0.4]))
    hard = InstanceData(bboxes_3d=box, labels_3d=torch.tensor([1]))
    heat, weight, _, _, code_w = head.get_targets(soft, (32, 32))
    assert code_w.flatten().tolist() == pytest.approx([0.4] * 8)
    foot = heat[1] > 0
    assert int(foot.sum()) >= 9
    assert torch.allclose(weight[foot], torch.tensor(0.4))
    assert bool((weight[~foot] == 1).all())
    torch.manual_seed(0)
    feats = torch.randn(1, 64, 32, 32)
    losses = {}
    for name, gt in (('soft', soft), ('hard', hard)):
        sample = PointCloudDataSample()
        sample.gt_instances_3d = gt
        losses[name] = head.loss(feats, [sample])
    torch.testing.assert_close(losses['soft']['loss_bbox'], 0.4 * losses['hard']['loss_bbox'])
    assert losses['soft']['loss_heatmap'] < losses['hard']['loss_heatmap']


def test_pillar_ids_equal_the_sorted_unique_cells():
    # the dense-grid pillar index gives each point the id torch.unique would: pillars
    # ordered by (frame, y, x), one id per occupied cell, frames never merged
    model = small_detector()
    gen = torch.Generator().manual_seed(1)
    points = [torch.cat([torch.rand(n, 1, generator=gen) * 30 - 2,
                         torch.rand(n, 1, generator=gen) * 30 - 15,
                         torch.rand(n, 2, generator=gen)], dim=1) for n in (500, 3000, 1)]
    _, coors = model.voxelizer(points)
    ids, num = model.voxel_encoder.pillar_index(coors)
    key = coors[:, 0].long() << 40 | coors[:, 2].long() << 20 | coors[:, 3].long()
    uniq, inverse = torch.unique(key, return_inverse=True)
    assert num == len(uniq) > 100
    assert torch.equal(ids, inverse)


@pytest.mark.parametrize('channels_last', [False, True])
def test_box_code_at_the_peaks_equals_the_full_map_there(channels_last):
    # predict evaluates the reg branch at the top-k cells only; at every cell, the borders
    # (the convolution's zero padding) and both corners included, it equals the full map
    head = small_detector().bbox_head.eval()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 64, 7, 9, generator=gen)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    inds = torch.stack([torch.randperm(63, generator=gen), torch.arange(63).flip(0)])
    full = head.reg(x).permute(0, 2, 3, 1).reshape(2, 63, -1)
    expected = full.gather(1, inds[..., None].expand(-1, -1, full.shape[-1]))
    got = head.reg_at(x, inds)
    assert got.shape == expected.shape == (2, 63, 8)
    assert expected.abs().mean() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_predict_decodes_the_same_boxes_as_the_full_maps():
    # the decoded boxes (code read at the peaks) equal a decoding from the full maps
    from mmdet.models.utils.gaussian_target import (get_local_maximum,
                                                    get_topk_from_heatmap,
                                                    transpose_and_gather_feat)
    model = small_detector(test_cfg=dict(score_thr=0.0, nms_thr=1.0, max_num=100))
    model.eval()
    head = model.bbox_head
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(2, 64, 32, 32, generator=gen)
    preds = head.predict(feats, [None, None])
    heat, reg = head(feats)
    heat = get_local_maximum(heat.sigmoid(), kernel=3)
    scores, inds, labels, ys, xs = get_topk_from_heatmap(heat, k=head.test_cfg['max_per_img'])
    code = transpose_and_gather_feat(reg, inds)
    for b, pred in enumerate(preds):
        # NMS at IoU 1.0 keeps every peak, in descending score order
        assert len(pred) == head.test_cfg['max_per_img']
        order = scores[b].argsort(descending=True)
        torch.testing.assert_close(pred.scores_3d, scores[b][order])
        r = code[b, order]
        x = (xs[b][order] + r[:, 0]) * head.cell[0] + head.pc_range[0]
        y = (ys[b][order] + r[:, 1]) * head.cell[1] + head.pc_range[1]
        expected = torch.cat([x[:, None], y[:, None], r[:, 2:3], r[:, 3:6].clamp(max=6).exp(),
                              torch.atan2(r[:, 6], r[:, 7])[:, None]], dim=1)
        torch.testing.assert_close(pred.bboxes_3d, expected, rtol=1e-5, atol=1e-5)
        assert torch.equal(pred.labels_3d, labels[b][order].long())


def test_a_reg_branch_it_cannot_read_cell_by_cell_is_run_over_the_map():
    # a 5x5 box-code convolution (not the 3x3 reg_at evaluates at the cells): the full map
    head = small_detector().bbox_head.eval()
    head.reg[0] = torch.nn.Conv2d(64, 64, 5, padding=2)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 64, 6, 6, generator=gen)
    inds = torch.arange(36)[None]
    expected = head.reg(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(head.reg_at(x, inds), expected)


def test_the_height_profile_gives_each_pillar_its_points_share_per_height_slice():
    # two pillars of one frame and one of another: a post, evenly dense over five slices,
    # and a person-like pillar whose points bunch at torso height; the range's z extent
    # (-3, 1) in 8 slices of 0.5 m, slice 0 at the bottom
    enc = MODELS.build(dict(type='PillarFeatureNet', in_channels=4, feat_channels=6,
                            voxel_size=VOXEL, point_cloud_range=PCR, height_bins=8))
    assert enc.out_channels == 14
    post_z = torch.tensor([-2 + 0.5 * k + o for k in range(5) for o in (.05, .15, .25, .35)])
    person_z = torch.tensor([-1.6, -0.6, -0.55, -0.45, -0.3, -0.2, 0.1, 0.9, 1.4])
    z = torch.cat([post_z, person_z, torch.tensor([-5.0])])  # 1.4 and -5: edge slices
    xy = torch.cat([torch.tensor([[1.1, 0.1]]).expand(20, 2),
                    torch.tensor([[5.1, -2.3]]).expand(9, 2), torch.tensor([[1.1, 0.1]])])
    points = torch.cat([xy, z[:, None], torch.rand(len(z), 1)], dim=1)
    coors = torch.zeros(len(z), 4, dtype=torch.int32)
    coors[:, 3] = (xy[:, 0] / 0.4).int()
    coors[:, 2] = ((xy[:, 1] + 12.8) / 0.4).int()
    coors[-1, 0] = 1  # the last point is another frame's pillar at the post's cell
    enc.eval()
    feats, pillar_coors = enc(points, coors)
    assert feats.shape == (3, 14)
    profile = {tuple(c.tolist()): f[6:] for c, f in zip(pillar_coors, feats)}
    post = profile[(0, 0, int(0.1 / 0.4 + 32), int(1.1 / 0.4))]
    assert torch.allclose(post, torch.tensor([0, 0, .2, .2, .2, .2, .2, 0]))
    person = profile[(0, 0, int((-2.3 + 12.8) / 0.4), int(5.1 / 0.4))]
    assert torch.allclose(person * 9, torch.tensor([0., 0, 1, 0, 2, 3, 1, 2]))
    assert torch.allclose(profile[(1, 0, 32, 2)], torch.tensor([1., 0, 0, 0, 0, 0, 0, 0]))
    # the learned features are the same with or without the profile
    plain = MODELS.build(dict(type='PillarFeatureNet', in_channels=4, feat_channels=6,
                              voxel_size=VOXEL, point_cloud_range=PCR)).eval()
    plain.load_state_dict(enc.state_dict())
    assert torch.allclose(plain(points, coors)[0], feats[:, :6])


def test_a_detector_with_height_profiles_trains_and_predicts():
    torch.manual_seed(0)
    cfg = dict(type='PillarFeatureNet', in_channels=4, feat_channels=12, voxel_size=VOXEL,
               point_cloud_range=PCR, height_bins=4)
    model = small_detector()
    model.voxel_encoder = MODELS.build(cfg)
    points, sample = scene()
    losses = model.loss(dict(points=[points]), [sample])
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.voxel_encoder.linear.weight.grad.abs().sum() > 0
