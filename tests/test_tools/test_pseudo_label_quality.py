"""tools/analysis/pseudo_label_quality.py: the tier matching on hand-made boxes with known
precision and recall, and the CLI on the tiny demo data with a teacher whose predictions are
the hidden labels themselves (mapped into the weak view), so every figure is known."""
import json
import os.path as osp
import shutil

import numpy as np
import pytest
import torch

from demo_helpers import ROOT, as_cli, data_overrides
from tools.analysis import pseudo_label_quality as quality

SEMI_CFG = osp.join(ROOT, 'configs/demo/mean-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
SOFT_CFG = osp.join(ROOT, 'configs/demo/soft-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py')
CONFIDENT, IGNORED, DROPPED = range(3)


def _match(preds, gts, num_classes=2, iou=0.5):
    """preds: (box, score, label, tier) tuples; gts: (box, label) tuples."""
    boxes, scores, labels, tiers = zip(*preds) if preds else ([], [], [], [])
    gt_boxes, gt_labels = zip(*gts) if gts else ([], [])
    return quality.match_tiers(torch.tensor(boxes).reshape(-1, 4), torch.tensor(scores),
                               torch.tensor(labels), torch.tensor(tiers),
                               torch.tensor(gt_boxes).reshape(-1, 4), torch.tensor(gt_labels),
                               num_classes, iou)


A, B, C, D = [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]
BACKGROUND_1, BACKGROUND_2 = [80, 80, 90, 90], [100, 100, 110, 110]


def test_three_tiers_known_precision_and_recall():
    # 3 confident (2 on objects), 1 ignored on an object, 1 dropped on background; 4 objects
    preds = [(A, 0.95, 0, CONFIDENT), (BACKGROUND_1, 0.93, 0, CONFIDENT),
             (B, 0.91, 0, CONFIDENT), (C, 0.6, 0, IGNORED), (BACKGROUND_2, 0.2, 0, DROPPED)]
    counts = _match(preds, [(A, 0), (B, 0), (C, 0), (D, 0)])
    assert counts['boxes'][0].tolist() == [3, 1, 1]
    assert counts['matched'][0].tolist() == [2, 1, 0]
    assert counts['duplicates'].sum() == 0 and counts['gts'].tolist() == [4, 0]
    figures = quality.summarize(counts, num_images=2, class_names=['a', 'b'])
    row = figures['classes']['a']
    assert row['confident']['precision'] == pytest.approx(2 / 3)
    assert row['ignored']['precision'] == 1.0 and row['dropped']['precision'] == 0.0
    assert row['confident']['recall'] == 0.5 and row['ignored']['recall'] == 0.25
    assert row['dropped']['recall'] == 0.0
    assert row['recall_confident_ignored'] == 0.75
    assert row['confident']['per_image'] == 1.5 and row['gt_per_image'] == 2.0
    # class 'b' has neither boxes nor objects: no figure to give
    assert figures['classes']['b']['confident']['precision'] is None
    assert figures['classes']['b']['recall_confident_ignored'] is None
    assert figures['overall']['confident']['precision'] == pytest.approx(2 / 3)
    assert figures['overall']['gt_boxes'] == 4


def test_class_must_agree():
    # a perfect box of the wrong class matches nothing; the object stays unfound
    counts = _match([(A, 0.9, 1, CONFIDENT), (B, 0.9, 1, CONFIDENT)], [(A, 0), (B, 1)])
    assert counts['boxes'].tolist() == [[0, 0, 0], [2, 0, 0]]
    assert counts['matched'].tolist() == [[0, 0, 0], [1, 0, 0]]
    assert counts['gts'].tolist() == [1, 1]
    # two objects of different classes on the same spot: each prediction takes its own
    counts = _match([(A, 0.9, 1, CONFIDENT), (A, 0.8, 0, IGNORED)], [(A, 0), (A, 1)])
    assert counts['matched'].tolist() == [[0, 1, 0], [1, 0, 0]]
    assert counts['duplicates'].sum() == 0


def test_duplicate_is_a_false_positive_in_score_order():
    # the lower-scoring box comes first in the input: the higher one still takes the object
    counts = _match([(A, 0.4, 0, IGNORED), (A, 0.95, 0, CONFIDENT), (A, 0.9, 0, CONFIDENT)],
                    [(A, 0)])
    assert counts['matched'][0].tolist() == [1, 0, 0]
    assert counts['duplicates'][0].tolist() == [1, 1, 0]
    row = quality.summarize(counts, 1, ['a', 'b'])['classes']['a']
    assert row['confident']['precision'] == 0.5 and row['confident']['recall'] == 1.0
    assert row['ignored']['precision'] == 0.0 and row['recall_confident_ignored'] == 1.0


def test_average_precision_of_a_known_ranking():
    # 2 objects; ranked: right (0.9), wrong (0.8), right (0.7): P = 1 at R 0.5, 2/3 at R 1
    assert quality.average_precision([0.7, 0.9, 0.8], [True, True, False], 2) == \
        pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # the same boxes with the wrong one ranked last lose nothing; ranked first, a third
    assert quality.average_precision([0.9, 0.8, 0.1], [True, True, False], 2) == 1.0
    assert quality.average_precision([0.5, 0.4, 0.9], [True, True, False], 2) == \
        pytest.approx(2 / 3)
    # an object never found caps the area at the recall reached
    assert quality.average_precision([0.9], [True], 4) == 0.25
    assert quality.average_precision([0.9], [False], 0) is None
    # from match_tiers' true positives: the duplicate is wrong, the class's mean skips 'b'
    counts = _match([(A, 0.4, 0, IGNORED), (A, 0.95, 0, CONFIDENT), (B, 0.9, 0, CONFIDENT)],
                    [(A, 0), (B, 0)])
    assert counts['true_positive'].tolist() == [False, True, True]
    ap = quality.teacher_ap([(np.array([0, 0, 0]), np.array([0.4, 0.95, 0.9]),
                              counts['true_positive'])], counts['gts'])
    assert ap == dict(mean=1.0, per_class=[1.0, None])


def test_iou_threshold_and_best_free_object():
    half = [0, 0, 10, 20]  # IoU with A: 100 / 200 = 0.5 exactly
    assert _match([(half, 0.9, 0, CONFIDENT)], [(A, 0)], iou=0.5)['matched'][0, 0] == 1
    assert _match([(half, 0.9, 0, CONFIDENT)], [(A, 0)], iou=0.51)['matched'][0, 0] == 0
    # a box over two objects (IoU 100/120 with each) whose first is taken takes the second
    near = [0, 0, 10, 12]
    counts = _match([(A, 0.9, 0, CONFIDENT), (near, 0.8, 0, IGNORED)],
                    [(A, 0), ([0, 2, 10, 12], 0)])
    assert counts['matched'][0].tolist() == [1, 1, 0]


def test_boxes_map_back_through_scale_flip_and_translation():
    """Original 200x100 image -> scale 0.5 (100x50) -> horizontal flip -> shift (10, 5),
    composed as mmdet records it; a flip alone is its own inverse and would not show the
    direction."""
    scale = np.diag([0.5, 0.5, 1.0])
    flip = np.array([[-1.0, 0, 100], [0, 1, 0], [0, 0, 1]])
    shift = np.array([[1.0, 0, 10], [0, 1, 5], [0, 0, 1]])
    homography = shift @ flip @ scale  # original -> weak view
    # by hand: x 20..60 -> 10..30 -> 70..90 -> 80..100; y 10..30 -> 5..15 -> 10..20
    original, weak = [20.0, 10.0, 60.0, 30.0], [80.0, 10.0, 100.0, 20.0]
    back = quality.boxes_to_original(torch.tensor([weak]), homography)
    assert back.tolist() == [pytest.approx(original)]
    wrong_way = [60.0, 10.0, 70.0, 15.0]  # where applying the homography again would land
    counts = quality.score_image(torch.tensor([weak, weak]), torch.tensor([0.9, 0.3]),
                                 torch.tensor([0, 1]), torch.tensor([CONFIDENT, DROPPED]),
                                 homography, torch.tensor([original, wrong_way]),
                                 torch.tensor([0, 1]), 2)
    assert counts['matched'].tolist() == [[1, 0, 0], [0, 0, 0]]


def test_hidden_labels_pairing_and_errors(tmp_path):
    path = tmp_path / 'hidden.json'
    json.dump(dict(
        images=[dict(id=1, file_name='train/1.png'), dict(id=2, file_name='train/2.png')],
        annotations=[dict(id=1, image_id=1, category_id=7, bbox=[1, 2, 3, 4], iscrowd=0),
                     dict(id=2, image_id=1, category_id=7, bbox=[0, 0, 9, 9], iscrowd=1),
                     dict(id=3, image_id=2, category_id=8, bbox=[0, 0, 5, 5], iscrowd=0),
                     dict(id=4, image_id=2, category_id=9, bbox=[5, 5, 5, 5], iscrowd=0)],
        categories=[dict(id=7, name='b'), dict(id=8, name='a'), dict(id=9, name='zebra')]),
        open(path, 'w'))
    hidden, skipped = quality.load_hidden_labels(str(path), ['a', 'b'])
    assert skipped == dict(crowd=1, other_category=1)
    name, boxes, labels = hidden[1]
    assert name == 'train/1.png' and boxes.tolist() == [[1, 2, 4, 6]] and labels.tolist() == [1]
    assert hidden[2][2].tolist() == [0]
    # paired by file, not by id: images_to_coco.py numbers an unlabeled file anew
    paired = quality.pair_hidden_images([(1, '/data/images/train/2.png', 'u.json'),
                                         (5, '/data/images/train/1.png', 'u.json')],
                                        hidden, 'h.json')
    assert paired[1] is hidden[2] and paired[5] is hidden[1]
    with pytest.raises(ValueError, match=r'image id 3 \(/d/3.png\) of the unlabeled split '
                                         r'u.json is not in --hidden-labels h.json'):
        quality.pair_hidden_images([(3, '/d/3.png', 'u.json')], hidden, 'h.json')
    # the whole file_name must end the path: another folder's 2.png is not train/2.png
    with pytest.raises(ValueError, match=r'image id 2 \(/d/val/2.png\) .* is not in'):
        quality.pair_hidden_images([(2, '/d/val/2.png', 'u.json')], hidden, 'h.json')


@pytest.mark.parametrize('config', [SEMI_CFG, SOFT_CFG])
def test_tiers_come_from_the_models_policy(config):
    """The model's own policy splits (per-class thresholds as loaded, never adapted here);
    SoftTeacher's classifier boxes also need its initial_score_thr."""
    from mmengine.config import Config
    from mmengine.structures import InstanceData
    from ssl_det.registry import MODELS
    cfg = Config.fromfile(config)
    if config == SOFT_CFG:
        cfg.model.initial_score_thr = 0.75
    model = MODELS.build(cfg.model)
    model.pseudo_label.high_thr.copy_(torch.tensor([0.8, 0.6, 0.8, 0.8, 0.8]))
    model.pseudo_label.low_thr.copy_(torch.tensor([0.4, 0.2, 0.4, 0.4, 0.4]))
    scores = [0.9, 0.7, 0.5, 0.3, 0.7, 0.3, 0.1]
    labels = [0, 0, 0, 0, 1, 1, 1]
    predictions = [InstanceData(bboxes=torch.zeros(4, 4), scores=torch.tensor(scores[:4]),
                                labels=torch.tensor(labels[:4])),
                   InstanceData(bboxes=torch.ones(3, 4), scores=torch.tensor(scores[4:]),
                                labels=torch.tensor(labels[4:]))]
    model.teacher_predict = lambda inputs, samples: predictions
    per_image = quality.teacher_tiers(model, None, None)
    tiers = torch.cat([t for _, _, _, t in per_image]).tolist()
    if config == SOFT_CFG:
        # initial_score_thr = 0.75: the class-1 box the policy calls confident (0.7 >= 0.6)
        # does not train the classifier; it is ignored, as the band is (below 0.75 too)
        assert tiers == [CONFIDENT, IGNORED, IGNORED, DROPPED, IGNORED, IGNORED, DROPPED]
    else:
        assert tiers == [CONFIDENT, IGNORED, IGNORED, DROPPED, CONFIDENT, IGNORED, DROPPED]
    assert [len(b) for b, _, _, _ in per_image] == [4, 3]
    assert int(model.pseudo_label.num_updates) == 0  # the thresholds did not adapt


# ---------------------------------------------------------------- the CLI, end to end
TEACHER_BIAS, STUDENT_BIAS = 7.0, 3.0
WEAK_SCALE = (96, 96)  # the demo's 128-px images at 0.75: the weak view is not the original


def _hidden_by_image(root):
    """The demo's true boxes per image id, read here without the tool's loader."""
    data = json.load(open(osp.join(root, 'annotations', 'instances_train.json')))
    out = {img['id']: [] for img in data['images']}
    for ann in data['annotations']:
        x, y, w, h = ann['bbox']
        out[ann['image_id']].append(([x, y, x + w, y + h], ann['category_id'] - 1))
    return out


def _to_view(box, homography):
    """A box of the original image in the view that ``homography`` maps it to."""
    x1, y1, x2, y2 = box
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x2, y2, 1], [x1, y2, 1]]) @ \
        np.asarray(homography, np.float64).T
    points = corners[:, :2] / corners[:, 2:]
    return [*points.min(0), *points.max(0)]


class FakeTeacher:
    """Stands in for the RoI head's predictions: per hidden box k of an image (file order),
    k % 3 == 0 -> score 0.9 and a duplicate at 0.2; k % 3 == 1 -> ``ignored_score``;
    k % 3 == 2 -> missed, and a box of a class absent from the image at score 0.1.
    Records the teacher weights it ran with, the view shapes and the flips."""

    def __init__(self, root, ignored_score):
        self.hidden = _hidden_by_image(root)
        self.ignored_score = ignored_score
        self.biases, self.shapes, self.flips, self.img_ids = set(), set(), [], []

    def predict(self, head, feats, proposals, samples, rescale=False):
        from mmengine.structures import InstanceData
        self.biases.add(float(head.bbox_head.fc_cls.bias[0]))
        results = []
        for sample in samples:
            self.shapes.add(tuple(sample.img_shape))
            self.flips.append(bool(sample.flip))
            self.img_ids.append(sample.img_id)
            objects = self.hidden[sample.img_id]
            absent = sorted(set(range(5)) - {label for _, label in objects})
            boxes, scores, labels = [], [], []
            for k, (box, label) in enumerate(objects):
                view_box = _to_view(box, sample.homography_matrix)
                if k % 3 == 0:
                    boxes += [view_box, view_box]
                    scores += [0.9, 0.2]
                    labels += [label, label]
                elif k % 3 == 1:
                    boxes.append(view_box)
                    scores.append(self.ignored_score)
                    labels.append(label)
                elif absent:
                    boxes.append(view_box)
                    scores.append(0.1)
                    labels.append(absent[0])
            results.append(InstanceData(bboxes=torch.tensor(boxes).reshape(-1, 4).float(),
                                        scores=torch.tensor(scores).float(),
                                        labels=torch.tensor(labels).long()))
        return results

    def expected(self, img_ids):
        """(C, 3) boxes and matched, (C,) gts and duplicates of the scored images."""
        boxes, matched = np.zeros((5, 3), int), np.zeros((5, 3), int)
        gts, dups = np.zeros(5, int), np.zeros(5, int)
        for img_id in img_ids:
            objects = self.hidden[img_id]
            absent = sorted(set(range(5)) - {label for _, label in objects})
            for k, (_, label) in enumerate(objects):
                gts[label] += 1
                if k % 3 == 0:
                    boxes[label, CONFIDENT] += 1
                    matched[label, CONFIDENT] += 1
                    boxes[label, DROPPED] += 1
                    dups[label] += 1
                elif k % 3 == 1:
                    boxes[label, IGNORED] += 1
                    matched[label, IGNORED] += 1
                elif absent:
                    boxes[absent[0], DROPPED] += 1
        return boxes, matched, gts, dups


@pytest.fixture
def fake_teacher(monkeypatch, tiny_demo):
    from mmdet.models.roi_heads import StandardRoIHead

    def install(ignored_score):
        fake = FakeTeacher(tiny_demo, ignored_score)
        monkeypatch.setattr(StandardRoIHead, 'predict',
                            lambda head, *args, **kwargs: fake.predict(head, *args, **kwargs))
        return fake
    return install


def _marked_model(config):
    """The config's model, teacher and student told apart by their classifier bias."""
    from mmengine.config import Config
    from ssl_det.registry import MODELS
    model = MODELS.build(Config.fromfile(config).model)
    model.teacher.roi_head.bbox_head.fc_cls.bias.data.fill_(TEACHER_BIAS)
    model.student.roi_head.bbox_head.fc_cls.bias.data.fill_(STUDENT_BIAS)
    return model


def _cli_args(tiny_demo, config, checkpoint, *extra):
    opts = data_overrides(tiny_demo, semi=True)
    opts['train_dataloader.dataset.datasets.1.pipeline.2.unsup_teacher.0.scale'] = WEAK_SCALE
    return [config, str(checkpoint), '--hidden-labels',
            osp.join(tiny_demo, 'annotations', 'instances_train.json'), '--num-workers', '0',
            '--batch-size', '4', *extra, '--cfg-options', *as_cli(opts)]


def _check_figures(result, fake):
    """Every figure equals what the fake teacher's boxes give, and is consistent."""
    boxes, matched, gts, dups = fake.expected(sorted(set(fake.img_ids)))
    assert result['images'] == len(set(fake.img_ids))
    names = list(result['classes'])
    assert names == ['circle', 'square', 'triangle', 'cross', 'star']
    rows = [(result['classes'][n], boxes[c], matched[c], gts[c], dups[c])
            for c, n in enumerate(names)]
    rows.append((result['overall'], boxes.sum(0), matched.sum(0), gts.sum(), dups.sum()))
    for row, b, m, g, d in rows:
        assert row['gt_boxes'] == g
        for t, tier in enumerate(quality.TIERS):
            fig = row[tier]
            assert (fig['boxes'], fig['matched']) == (b[t], m[t]), tier
            assert fig['precision'] == (m[t] / b[t] if b[t] else None)
            assert fig['recall'] == (m[t] / g if g else None)
            assert fig['per_image'] == pytest.approx(b[t] / result['images'])
            for key in ('precision', 'recall'):
                assert fig[key] is None or 0.0 <= fig[key] <= 1.0
        assert row['dropped']['duplicates'] == d
        assert row['recall_confident_ignored'] == ((m[0] + m[1]) / g if g else None)
        if g and row is not result['overall']:
            # every correct box outranks every wrong one: AP = the recall they reach
            assert row['teacher_ap'] == pytest.approx(row['recall_confident_ignored'])
    known = [result['classes'][n]['teacher_ap'] for c, n in enumerate(names) if gts[c]]
    assert result['teacher_ap'] == pytest.approx(np.mean(known)) and result['teacher_ap'] < 1
    overall = result['overall']
    # the teacher's confident and ignored boxes are the hidden boxes: all correct
    assert overall['confident']['precision'] == 1.0 and overall['ignored']['precision'] == 1.0
    assert overall['dropped']['precision'] == 0.0
    assert overall['confident']['boxes'] > 0 and overall['ignored']['boxes'] > 0
    assert overall['dropped']['boxes'] > overall['dropped']['duplicates'] > 0
    assert overall['recall_confident_ignored'] < 1.0  # every third object was missed


def test_cli_teacher_student_checkpoint(tiny_demo, tmp_path, fake_teacher):
    """A teacher-student checkpoint: its teacher predicts and its adapted thresholds split."""
    model = _marked_model(SEMI_CFG)
    high = torch.tensor([0.85, 0.84, 0.83, 0.82, 0.81])
    low = torch.tensor([0.45, 0.44, 0.43, 0.42, 0.41])
    model.pseudo_label.high_thr.copy_(high)
    model.pseudo_label.low_thr.copy_(low)
    model.pseudo_label.num_updates.fill_(12)
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'iter_12.pth')
    # 0.7 is ignored under the checkpoint's thresholds, confident under the config's (0.6)
    fake = fake_teacher(ignored_score=0.7)
    out = tmp_path / 'quality.json'
    printed = quality.main(_cli_args(tiny_demo, SEMI_CFG, tmp_path / 'iter_12.pth',
                                     '--out', str(out)))
    result = json.load(open(out))
    assert result == json.loads(json.dumps(printed))
    assert fake.biases == {TEACHER_BIAS}  # the teacher's weights, never the student's
    assert fake.shapes == {WEAK_SCALE}
    assert True in fake.flips and False in fake.flips  # the weak view's flip was kept
    unlabeled = json.load(open(osp.join(tiny_demo, 'semi_anns',
                                        'instances_train.1@10-unlabeled.json')))
    # every unlabeled image, once
    assert sorted(fake.img_ids) == sorted(img['id'] for img in unlabeled['images'])
    thr = result['thresholds']
    assert (thr['policy'], thr['source'], thr['policy_updates']) == \
        ('DynamicThreshold', 'checkpoint', 12)
    assert [v['high'] for v in thr['classes'].values()] == pytest.approx(high.tolist())
    assert [v['low'] for v in thr['classes'].values()] == pytest.approx(low.tolist())
    assert thr['test_score_thr'] == 0.05
    _check_figures(result, fake)


def test_cli_plain_checkpoint_soft_teacher(tiny_demo, tmp_path, fake_teacher):
    """A plain detector checkpoint fills the teacher; SoftTeacher's initial_score_thr and
    the config's initial thresholds split; the JSON lands next to the checkpoint."""
    model = _marked_model(SOFT_CFG)
    ckpt_dir = tmp_path / 'stage1'
    ckpt_dir.mkdir()
    torch.save({'state_dict': model.teacher.state_dict(), 'meta': {}}, ckpt_dir / 'det.pth')
    fake = fake_teacher(ignored_score=0.5)
    quality.main(_cli_args(tiny_demo, SOFT_CFG, ckpt_dir / 'det.pth', '--max-images', '10'))
    result = json.load(open(ckpt_dir / 'pseudo_label_quality.json'))
    assert fake.biases == {TEACHER_BIAS}
    assert len(set(fake.img_ids)) == 10
    thr = result['thresholds']
    assert result['model'] == 'SoftTeacher' and thr['initial_score_thr'] == 0.3
    assert thr['source'].startswith('config (initial values')
    assert [v['high'] for v in thr['classes'].values()] == pytest.approx([0.6] * 5)
    assert [v['low'] for v in thr['classes'].values()] == pytest.approx([0.3] * 5)
    _check_figures(result, fake)


def test_cli_names_an_unlabeled_image_missing_from_hidden_labels(tiny_demo, tmp_path):
    root = tmp_path / 'demo'
    shutil.copytree(tiny_demo, root)
    unlabeled = json.load(open(root / 'semi_anns' / 'instances_train.1@10-unlabeled.json'))
    missing = unlabeled['images'][3]
    hidden = root / 'annotations' / 'instances_train.json'
    data = json.load(open(hidden))
    data['images'] = [img for img in data['images'] if img['id'] != missing['id']]
    data['annotations'] = [a for a in data['annotations'] if a['image_id'] != missing['id']]
    json.dump(data, open(hidden, 'w'))
    with pytest.raises(SystemExit, match=f"image id {missing['id']} "
                                         f".*{osp.basename(missing['file_name'])}.* is not in "
                                         '--hidden-labels'):
        quality.main(_cli_args(str(root), SEMI_CFG, tmp_path / 'never_loaded.pth'))


def test_a_crop_before_the_views_is_left_out(tiny_demo):
    """The DeepPCB configs crop each unlabeled scan before its views: the tool scores the
    teacher on whole images, or most hidden boxes would lie outside what it saw."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, 'configs/deeppcb/'
                                         'mean-teacher_faster-rcnn_r18_fpn_deeppcb_semi.py'))
    unlabeled = cfg.train_dataloader.dataset.datasets[1]
    assert any(s['type'] == 'RandomCrop' for s in unlabeled.pipeline)
    cfg.merge_from_dict({'train_dataloader.dataset.datasets.1.data_root': tiny_demo + '/',
                         'train_dataloader.dataset.datasets.1.data_prefix.img': 'images/',
                         'train_dataloader.dataset.datasets.1.metainfo.classes':
                             ('circle', 'square', 'triangle', 'cross', 'star'),
                         'train_dataloader.dataset.datasets.1.ann_file':
                             'semi_anns/instances_train.1@10-unlabeled.json'})
    [dataset] = quality.unlabeled_datasets(cfg)
    assert not any('Crop' in str(getattr(t, '__class__', type(t)).__name__)
                   for t in dataset.pipeline.transforms)
    sample = dataset[0]['data_samples'][quality.BRANCH]
    # the demo's 128-px images resized to the config's 320: the whole image, not a 192 crop
    assert sample.img_shape == (320, 320)
