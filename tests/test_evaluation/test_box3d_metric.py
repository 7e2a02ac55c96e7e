"""KITTI-style 3D AP: a scene computed by hand, a slow pure-Python oracle (shapely footprints,
z overlap, plain greedy loop, exact fractions) on random scenes, and the registered metric."""
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from shapely.geometry import Polygon

from ssl_det.evaluation import Box3DAPMetric, ap3d, class_mean, eval_ap3d, greedy_match
from ssl_det.registry import METRICS
from ssl_det.structures.point_cloud_data_sample import PointCloudDataSample


def box(x, y, z=0.0, dx=4.0, dy=2.0, dz=2.0, yaw=0.0):
    return [x, y, z, dx, dy, dz, yaw]


def gt_frame(boxes, labels, **extra):
    return dict(bboxes_3d=np.array(boxes, dtype=np.float64).reshape(-1, 7),
                labels_3d=np.array(labels, dtype=np.int64), **extra)


def pred_frame(boxes, labels, scores):
    return dict(bboxes_3d=np.array(boxes, dtype=np.float64).reshape(-1, 7),
                labels_3d=np.array(labels, dtype=np.int64),
                scores_3d=np.array(scores, dtype=np.float64))


# ---------------------------------------------------------------------------- by hand
# One class, IoU threshold 0.5, boxes 4 x 2 x 2 m, yaw 0. Three GT count (a1, a2, b1); b2 is
# flagged gt_ignore.
HAND_GT = [
    gt_frame([box(0, 0), box(10, 0)], [0, 0]),  # frame A: a1, a2
    gt_frame([box(0, 10), box(20, 0)], [0, 0], gt_ignore=np.array([False, True])),  # B: b1, b2
]
HAND_PRED = [
    # frame A: p1 (0.9) = a1; p3 (0.7) a duplicate of a1; p5 (0.5) = a2 raised by 1 m.
    pred_frame([box(0, 0), box(0.1, 0), box(10, 0, z=1.0)], [0, 0, 0], [0.9, 0.7, 0.5]),
    # frame B: p2 (0.8) = b1 moved 1 m along x and raised 0.5 m; p4 (0.6) = b2 (ignored);
    # p6 (0.4) far from everything.
    pred_frame([box(1, 10, z=0.5), box(20, 0), box(40, 30)], [0, 0, 0], [0.8, 0.6, 0.4]),
]
# BEV IoU: p2-b1 = (3 x 2) / (8 + 8 - 6) = 0.6 (TP); p5-a2 = 1 (TP); p3-a1 = 0.95, but a1
# is already taken by p1 and p3 does not touch a2 (FP); p4-b2 = 1 (dropped: b2 is ignored). Score order: p1 TP, p2 TP, p3 FP, p4 dropped,
# p5 TP, p6 FP -> (precision, recall): (1, 1/3), (1, 2/3), (2/3, 2/3), (3/4, 1), (3/5, 1).
# Interpolated precision: 1 for r <= 2/3, max(3/4, 3/5) = 3/4 for r in (2/3, 1].
# R11: r = 0, .1, ..., .6 -> 7 x 1; r = .7, .8, .9, 1 -> 4 x 3/4: (7 + 3) / 11 = 10/11.
# R40: k/40 <= 2/3 for k = 1..26 -> 26 x 1; k = 27..40 -> 14 x 3/4: (26 + 10.5) / 40 = 0.9125.
HAND_BEV = {11: 10 / 11, 40: 36.5 / 40}
# 3D IoU: p2-b1 = (6 x 1.5) / (16 + 16 - 9) = 9/23 < 0.5 (FP); p5-a2 = (8 x 1) / (32 - 8) = 1/3
# (FP). Score order: p1 TP, p2 FP, p3 FP, p4 dropped, p5 FP, p6 FP -> (1, 1/3), (1/2, 1/3),
# (1/3, 1/3), (1/4, 1/3), (1/5, 1/3). Interpolated precision: 1 for r <= 1/3, else 0.
# R11: r = 0, .1, .2, .3 -> 4/11. R40: k = 1..13 -> 13/40.
HAND_3D = {11: 4 / 11, 40: 13 / 40}


def test_hand_computed_scene():
    res = eval_ap3d(HAND_GT, HAND_PRED, 1, [[0.5]], recall_points=(11, 40))
    for r, points in enumerate((11, 40)):
        assert res.ap['bev'][0, 0, 0, 0, r] == pytest.approx(HAND_BEV[points], abs=1e-12)
        assert res.ap['3d'][0, 0, 0, 0, r] == pytest.approx(HAND_3D[points], abs=1e-12)
    assert res.num_gt.tolist() == [[[3]]] and res.num_pred.tolist() == [[6]]


def test_hand_scene_match_outcomes():
    """The TP/FP sequence itself, frame A in score order (p1, p3, p5)."""
    ious = ap3d.frame_ious(HAND_PRED[0]['bboxes_3d'], HAND_GT[0]['bboxes_3d'], 'bev')
    out = greedy_match(ious[None], 0.5, np.zeros((1, 2), bool), np.ones((1, 3), bool))
    assert out.tolist() == [[ap3d.TP, ap3d.FP, ap3d.TP]]
    ious = ap3d.frame_ious(HAND_PRED[1]['bboxes_3d'], HAND_GT[1]['bboxes_3d'], '3d')
    assert ious[0, 0] == pytest.approx(9 / 23)
    out = greedy_match(ious[None], 0.5, np.array([[False, True]]), np.ones((1, 3), bool))
    assert out.tolist() == [[ap3d.FP, ap3d.DROPPED, ap3d.FP]]


def test_match_takes_highest_iou_gt():
    """p1 overlaps g0 (IoU 2/3) and g1 (IoU 0.905): it takes g1, so p2 (IoU 0.54 with g1 only
    above 0.5) is a FP, although matching p1 to g0 would have made both TPs."""
    gt = [gt_frame([box(0, 0), box(1, 0)], [0, 0])]
    pred = [pred_frame([box(0.8, 0), box(2.2, 0)], [0, 0], [0.9, 0.8])]
    res = eval_ap3d(gt, pred, 1, [[0.5]], box_types=('bev', ), recall_points=(40, ))
    # (1, 1/2), (1/2, 1/2) -> k = 1..20 of 40 at precision 1.
    assert res.ap['bev'][0, 0, 0, 0, 0] == pytest.approx(0.5)


# ---------------------------------------------------------------------------- oracle
def corners_bev(b):
    c, s = math.cos(b[6]), math.sin(b[6])
    return [(b[0] + c * u - s * v, b[1] + s * u + c * v)
            for u, v in ((b[3] / 2, b[4] / 2), (-b[3] / 2, b[4] / 2), (-b[3] / 2, -b[4] / 2),
                         (b[3] / 2, -b[4] / 2))]


def slow_iou(p, g, box_type):
    pp, pg = Polygon(corners_bev(p)), Polygon(corners_bev(g))
    inter = pp.intersection(pg).area
    if box_type == 'bev':
        return inter / (pp.area + pg.area - inter)
    dz = max(0.0, min(p[2] + p[5] / 2, g[2] + g[5] / 2) - max(p[2] - p[5] / 2, g[2] - g[5] / 2))
    inter *= dz
    return inter / (p[3] * p[4] * p[5] + g[3] * g[4] * g[5] - inter)


def slow_ap(gts, preds, c, thr, box_type, points, level=None, rng=None):
    """One AP value, from plain loops and exact fractions."""
    def inside(b):
        return rng is None or rng[0] <= math.hypot(b[0], b[1]) < rng[1]

    entries, num_gt = [], 0  # entries: (score, outcome) in frame order
    for g, p in zip(gts, preds):
        gi = [j for j in range(len(g['labels_3d'])) if g['labels_3d'][j] == c]
        ignored = {}
        for j in gi:
            ign = bool(g.get('gt_ignore', np.zeros(len(g['labels_3d']), bool))[j])
            if level is not None:
                ign = ign or not 0 <= g['difficulty'][j] <= level
            ignored[j] = ign or not inside(g['bboxes_3d'][j])
            num_gt += not ignored[j]
        pi = [k for k in range(len(p['labels_3d']))
              if p['labels_3d'][k] == c and inside(p['bboxes_3d'][k])]
        pi = sorted(pi, key=lambda k: -p['scores_3d'][k])
        matched = set()
        for k in pi:
            best, best_iou = None, -1.0
            for j in gi:
                iou = slow_iou(p['bboxes_3d'][k], g['bboxes_3d'][j], box_type)
                if j not in matched and iou >= thr and iou > best_iou:
                    best, best_iou = j, iou
            if best is None:
                entries.append((p['scores_3d'][k], 'fp'))
            else:
                matched.add(best)
                if not ignored[best]:
                    entries.append((p['scores_3d'][k], 'tp'))
    if num_gt == 0:
        return math.nan
    entries = sorted(entries, key=lambda e: -e[0])
    curve, tp = [], 0
    for n, (_, outcome) in enumerate(entries, 1):
        tp += outcome == 'tp'
        curve.append((Fraction(tp, n), Fraction(tp, num_gt)))
    steps = [Fraction(i, 10) for i in range(11)] if points == 11 else [
        Fraction(i, 40) for i in range(1, 41)]
    total = sum(max([pr for pr, rc in curve if rc >= r], default=Fraction(0)) for r in steps)
    return float(total / len(steps))


def random_scene(seed, num_frames=5, num_classes=2, quantize=False):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(num_frames):
        m = int(rng.integers(0, 7))
        g = np.column_stack([rng.uniform(0, 40, m), rng.uniform(-20, 20, m),
                             rng.uniform(-2, 0, m), rng.uniform(1, 5, m), rng.uniform(0.5, 2, m),
                             rng.uniform(1, 2, m), rng.uniform(-np.pi, np.pi, m)])
        labels = rng.integers(0, num_classes, m)
        noisy = g + rng.normal(0, [0.15, 0.15, 0.15, 0.1, 0.1, 0.1, 0.05], g.shape)
        shifted = g + np.concatenate([rng.uniform(-1.2, 1.2, (m, 3)), np.zeros((m, 4))], 1)
        dupes = noisy + rng.normal(0, 0.05, g.shape)
        n_rand = int(rng.integers(0, 4))
        rand = np.column_stack([rng.uniform(0, 40, n_rand), rng.uniform(-20, 20, n_rand),
                                rng.uniform(-2, 0, n_rand), rng.uniform(1, 5, (n_rand, 3)),
                                rng.uniform(-np.pi, np.pi, n_rand)])
        keep = [rng.random(m) < 0.8, rng.random(m) < 0.5, rng.random(m) < 0.3]
        boxes = np.concatenate([noisy[keep[0]], shifted[keep[1]], dupes[keep[2]], rand])
        p_labels = np.concatenate([labels[k] for k in keep] +
                                  [rng.integers(0, num_classes, n_rand)])
        scores = rng.random(len(boxes))
        if quantize:  # many ties: the stable order decides
            scores = np.round(scores * 4) / 4
        order = rng.permutation(len(boxes))
        gts.append(gt_frame(g, labels, difficulty=rng.integers(-1, 3, m),
                            gt_ignore=rng.random(m) < 0.1))
        preds.append(pred_frame(boxes[order], p_labels[order], scores[order]))
    return gts, preds


@pytest.mark.parametrize('seed,quantize', [(0, False), (1, False), (2, True), (3, False),
                                           (4, True), (5, False)])
def test_matches_slow_oracle_on_random_scenes(seed, quantize):
    gts, preds = random_scene(seed, quantize=quantize)
    thr = [[0.7, 0.5], [0.3, 0.25]]
    levels, ranges = (None, 0, 1, 2), (None, (0, 20), (20, 50))
    res = eval_ap3d(gts, preds, 2, thr, difficulties=levels, distance_ranges=ranges)
    checked = 0
    for bt in ('bev', '3d'):
        for s in range(2):
            for c in range(2):
                for d, level in enumerate(levels):
                    for g, rng in enumerate(ranges):
                        for r, points in enumerate((40, 11)):
                            want = slow_ap(gts, preds, c, thr[s][c], bt, points, level, rng)
                            got = res.ap[bt][s, c, d, g, r]
                            if math.isnan(want):
                                assert math.isnan(got), (bt, s, c, level, rng, points)
                            else:
                                checked += 1
                                assert got == pytest.approx(want, abs=1e-6), (bt, s, c, level,
                                                                              rng, points)
    assert checked > 100


def test_random_scene_is_not_trivial():
    """The oracle scenes hold TPs, FPs, dropped predictions and values strictly inside (0, 1)."""
    gts, preds = random_scene(0)
    res = eval_ap3d(gts, preds, 2, [[0.7, 0.5]], difficulties=(None, 1))
    values = np.concatenate([a[np.isfinite(a)] for a in res.ap.values()])
    assert ((values > 0.05) & (values < 0.95)).any()
    assert (res.num_gt[:, 1] < res.num_gt[:, 0]).any()  # the difficulty filter ignores boxes


# ---------------------------------------------------------------------------- edge cases
def test_perfect_none_and_missing_class():
    gts, _ = random_scene(7)
    perfect = [pred_frame(g['bboxes_3d'], g['labels_3d'], np.linspace(1, 0.5, len(g['labels_3d'])))
               for g in gts]
    empty = [pred_frame(np.zeros((0, 7)), [], []) for _ in gts]
    # class 2 has no ground truth; class 0 and 1 have some.
    res = eval_ap3d(gts, perfect, 3, [[0.7, 0.7, 0.7]])
    for ap in res.ap.values():
        np.testing.assert_allclose(ap[0, :2], 1.0)
        assert np.isnan(ap[0, 2]).all()
        np.testing.assert_allclose(class_mean(ap)[0], 1.0)  # the NaN class is left out
    res = eval_ap3d(gts, empty, 3, [[0.7, 0.7, 0.7]])
    for ap in res.ap.values():
        np.testing.assert_array_equal(ap[0, :2], 0.0)
        np.testing.assert_array_equal(class_mean(ap), 0.0)
    assert np.isnan(class_mean(np.full((1, 2, 1, 1, 1), np.nan))).all()


def test_one_iou_kernel_call_per_frame_and_box_type(monkeypatch):
    calls = []
    for name in ('rotated_iou_bev', 'iou_3d'):
        real = getattr(ap3d, name)
        monkeypatch.setattr(ap3d, name, lambda a, b, _real=real, _n=name: calls.append(_n)
                            or _real(a, b))
    gts, preds = random_scene(8, num_frames=6)
    frames = sum(len(p['labels_3d']) > 0 and len(g['labels_3d']) > 0 for g, p in zip(gts, preds))
    eval_ap3d(gts, preds, 2, [[0.7, 0.5], [0.5, 0.25], [0.3, 0.3]], difficulties=(None, 0, 1),
              distance_ranges=(None, (0, 20)))
    assert calls.count('rotated_iou_bev') == calls.count('iou_3d') == frames


def test_bad_inputs_name_the_frame():
    gt = [gt_frame([box(0, 0)], [0], frame_id='000042')]
    with pytest.raises(ValueError, match=r'000042.*labels_3d.*\[0, 1\)'):
        eval_ap3d([gt_frame([box(0, 0)], [1], frame_id='000042')],
                  [pred_frame([], [], [])], 1, [[0.5]])
    with pytest.raises(ValueError, match='no difficulty'):
        eval_ap3d(gt, [pred_frame([], [], [])], 1, [[0.5]], difficulties=(1, ))
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        eval_ap3d(gt, [pred_frame([], [], [])], 1, [[0.0]])


# ---------------------------------------------------------------------------- the metric
CLASSES = ('Car', 'Pedestrian', 'Cyclist')


def sample_dicts(gts, preds):
    """Data samples as mmengine hands them to ``process``: ``data_sample.to_dict()``, with
    flagged boxes under ``ignored_instances_3d`` as mmdet packs them."""
    out = []
    for i, (g, p) in enumerate(zip(gts, preds)):
        flagged = g.get('gt_ignore', np.zeros(len(g['labels_3d']), bool))
        fields = [k for k in ('bboxes_3d', 'labels_3d', 'difficulty') if k in g]
        out.append(dict(frame_id=f'{i:06d}',
                        gt_instances_3d={k: torch.as_tensor(g[k][~flagged]) for k in fields},
                        ignored_instances_3d={k: torch.as_tensor(g[k][flagged]) for k in fields},
                        pred_instances_3d={k: torch.as_tensor(v) for k, v in p.items()}))
    return out


def test_registered_metric_keys_and_values():
    metric = METRICS.build(dict(type='Box3DAPMetric', difficulties=(0, 1, 2)))
    assert isinstance(metric, Box3DAPMetric)
    metric.dataset_meta = dict(classes=CLASSES)
    gts, preds = random_scene(11, num_frames=6, num_classes=3)
    samples = sample_dicts(gts, preds)
    metric.process({}, samples[:3])
    metric.process({}, samples[3:])
    out = metric.evaluate(len(samples))
    suffixes = ['', '/easy', '/moderate', '/hard']
    thresholds = [(0.7, 0.5, 0.5), (0.5, 0.25, 0.25)]
    want = {'ap3d/mAP'}
    for bt in ('bev', '3d'):
        for p in (40, 11):
            for sfx in suffixes:
                want |= {f'ap3d/{bt}/mAP@set{s}/R{p}{sfx}' for s in range(2)}
                want |= {f'ap3d/{bt}/{c}@{t[i]:.2f}/R{p}{sfx}' for t in thresholds
                         for i, c in enumerate(CLASSES)}
    assert set(out) == want
    assert '3d/Car@0.70/R40' in {k[5:] for k in out} and 'ap3d/bev/Pedestrian@0.25/R11' in out
    ref = eval_ap3d(gts, preds, 3, thresholds, difficulties=(None, 0, 1, 2))
    assert out['ap3d/3d/Car@0.70/R40/moderate'] == pytest.approx(ref.ap['3d'][0, 0, 2, 0, 0])
    assert out['ap3d/bev/Cyclist@0.25/R11'] == pytest.approx(ref.ap['bev'][1, 2, 0, 0, 1],
                                                             nan_ok=True)
    assert out['ap3d/mAP'] == out['ap3d/3d/mAP@set0/R40'] == pytest.approx(
        class_mean(ref.ap['3d'])[0, 0, 0, 0])
    assert 0 < out['ap3d/mAP'] < 1


def test_metric_on_hand_scene_with_data_samples():
    """PointCloudDataSample input, ignored boxes as ignored_instances_3d, a chosen primary."""
    metric = METRICS.build(dict(type='Box3DAPMetric', iou_thresholds=[0.5],
                                primary='bev/Car@0.50/R11'))
    metric.dataset_meta = dict(classes=CLASSES)
    samples = []
    for i, (g, p) in enumerate(zip(HAND_GT, HAND_PRED)):
        keep = ~g.get('gt_ignore', np.zeros(len(g['labels_3d']), bool))
        s = PointCloudDataSample(metainfo=dict(frame_id=str(i)))
        s.gt_instances_3d = InstanceData(bboxes_3d=torch.as_tensor(g['bboxes_3d'][keep]),
                                         labels_3d=torch.as_tensor(g['labels_3d'][keep]))
        s.ignored_instances_3d = InstanceData(bboxes_3d=torch.as_tensor(g['bboxes_3d'][~keep]),
                                              labels_3d=torch.as_tensor(g['labels_3d'][~keep]))
        s.pred_instances_3d = InstanceData(**{k: torch.as_tensor(v) for k, v in p.items()})
        samples.append(s if i == 0 else s.to_dict())
    metric.process({}, samples)
    metric.process({}, [dict(frame_id='no boxes', ignored_instances_3d={},
                             gt_instances_3d=dict(bboxes_3d=torch.zeros(0, 7),
                                                  labels_3d=torch.zeros(0, dtype=torch.long)),
                             pred_instances_3d=dict(bboxes_3d=torch.zeros(0, 7),
                                                    labels_3d=torch.zeros(0, dtype=torch.long),
                                                    scores_3d=torch.zeros(0)))])
    out = metric.evaluate(3)
    assert out['ap3d/bev/Car@0.50/R40'] == pytest.approx(HAND_BEV[40])
    assert out['ap3d/3d/Car@0.50/R11'] == pytest.approx(HAND_3D[11])
    assert out['ap3d/mAP'] == pytest.approx(HAND_BEV[11])
    assert math.isnan(out['ap3d/3d/Pedestrian@0.50/R40'])
    assert out['ap3d/3d/mAP@set0/R40'] == pytest.approx(HAND_3D[40])  # NaN classes left out


def test_metric_difficulty_and_distance_keys():
    """Combined filters map to the right AP entries (difficulty and range axes not swapped)."""
    ranges = [(0, 20), (20, 50)]
    metric = METRICS.build(dict(type='Box3DAPMetric', iou_thresholds=[0.5, 0.3],
                                difficulties=(1, 2), distance_ranges=ranges, recall_points=(40, ),
                                primary='3d/mAP@set1/R40/moderate/20-50m'))
    metric.dataset_meta = dict(classes=CLASSES)
    gts, preds = random_scene(12, num_frames=8, num_classes=3)
    metric.process({}, sample_dicts(gts, preds))
    out = metric.evaluate(8)
    ref = eval_ap3d(gts, preds, 3, [[0.5] * 3, [0.3] * 3], recall_points=(40, ),
                    difficulties=(None, 1, 2), distance_ranges=[None] + ranges)
    assert len(out) == 2 * 2 * 3 * 3 * (3 + 1) + 1  # box x set x difficulty x range x keys
    for d, dname in enumerate(['', '/moderate', '/hard']):
        for g, gname in enumerate(['', '/0-20m', '/20-50m']):
            for s, t in enumerate(('0.50', '0.30')):
                for c, name in enumerate(CLASSES):
                    key = f'ap3d/bev/{name}@{t}/R40{dname}{gname}'
                    assert out[key] == pytest.approx(ref.ap['bev'][s, c, d, g, 0], nan_ok=True)
    assert out['ap3d/mAP'] == pytest.approx(class_mean(ref.ap['3d'])[1, 1, 2, 0])


def test_metric_errors():
    with pytest.raises(ValueError, match='primary'):
        Box3DAPMetric(primary='3d/mAP@set5/R40')
    with pytest.raises(ValueError, match='recall_points'):
        Box3DAPMetric(recall_points=(20, ))
    with pytest.raises(ValueError, match=r"\['Van'\].*'default'"):
        Box3DAPMetric(iou_thresholds=[dict(Car=0.7)]).threshold_matrix(['Car', 'Van'])
    metric = Box3DAPMetric(difficulties=(0, 1, 2))
    metric.dataset_meta = dict(classes=CLASSES)
    samples = sample_dicts(HAND_GT, HAND_PRED)
    with pytest.raises(KeyError, match='000000.*difficulty'):
        metric.process({}, samples)
    samples[1]['pred_instances_3d']['labels_3d'] = torch.tensor([0, 3, 0])
    metric = Box3DAPMetric()
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(ValueError, match=r'000001: pred_instances_3d.labels_3d.*\[0, 3\)'):
        metric.process({}, samples)  # found on the frame when the classes are known
    metric = Box3DAPMetric()
    metric.process({}, samples)
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(ValueError, match=r'000001.*labels_3d'):
        metric.compute_metrics(metric.results)
