"""Score a teacher's pseudo labels, tier by tier, against the labels of its unlabeled images.

    python tools/analysis/pseudo_label_quality.py CONFIG CHECKPOINT --hidden-labels TRAIN.json
        [--out FILE.json] [--max-images N] [--iou 0.5] [--batch-size 8] [--num-workers 2]
        [--seed 0] [--device cpu|cuda] [--trust-checkpoint] [--cfg-options k=v ...]

Are my thresholds right? Example (the demo's 10% split; the full train file holds the
unlabeled images' boxes):
    python tools/analysis/pseudo_label_quality.py \
        configs/demo/soft-teacher_faster-rcnn_r18_fpn_demo_semi-10pct.py \
        work_dirs/demo/seed0/soft-teacher_faster-rcnn_r18_fpn_demo_semi-10pct/iter_1000.pth \
        --hidden-labels data/demo/annotations/instances_train.json --max-images 200

The config is the semi-supervised one the checkpoint was trained with (``TeacherStudent``
or ``SoftTeacher``). CHECKPOINT is a teacher-student checkpoint (its teacher predicts; a
``DynamicThreshold`` policy's adapted thresholds are read from it) or a plain detector
checkpoint (it fills teacher and student, as ``load_from`` does; an adaptive policy then
starts from the config's initial thresholds, and the output says so).

What happens, as in training: the unlabeled images of ``train_dataloader`` (the dataset
whose pipeline's ``MultiBranch`` has an ``unsup_teacher`` branch) go through that weak-view
branch (random steps such as the flip seeded per image with ``--seed``; a random crop
before the views is left out, so that the teacher scores whole images), batched through
the model's data preprocessor; the teacher predicts (``teacher_predict``, no gradients)
and the model's pseudo-label policy splits its predictions (the policy's own forward; for
``SoftTeacher`` also its ``initial_score_thr``, through the same selection function; the
policy's ``update`` is not called, so adaptive thresholds stay as loaded):

- ``confident``: become pseudo ground truth;
- ``ignored``: the ambiguous band (neither foreground nor background for the student);
- ``dropped``: every other prediction (down to the detector's test ``score_thr``).

Each prediction is mapped from the weak view back to the original image with the inverse
of the view's ``homography_matrix`` and matched with the image's boxes in ``--hidden-labels``
(a labeled COCO file that holds the unlabeled images, e.g. the one the split was made from;
images are paired by file name, so an unlabeled file from ``images_to_coco.py``, which
numbers its images anew, works too): greedy in score order over all tiers at once, a
prediction takes the unmatched box of its class with the highest IoU >= ``--iou``. A
prediction of an object already taken by a higher-scoring one is a false positive (counted
as a ``duplicate``).

Per class and overall, per tier: ``boxes``, ``precision`` (matched / boxes), ``recall``
(hidden boxes matched by the tier / all hidden boxes), ``per_image`` (boxes per image, to
compare with ``gt_per_image``), and ``recall_confident_ignored`` (the two tiers together).
A precision or recall without a denominator is null. Thresholds aside, ``teacher_ap``
(per class and the mean over classes with hidden boxes): the average precision at ``--iou``
of every prediction ranked by its score, the same matching, which says how well the
teacher's scores sort right boxes from wrong ones (e.g. with and without
``--cfg-options model.teacher_views=[horizontal]``). Crowd boxes (``iscrowd``) and boxes
of categories the config does not train are not scored; their numbers are reported.
Masks of mask models are not scored. The table is printed; ``--out`` (default
``<work_dir or the checkpoint's folder>/pseudo_label_quality.json``) gets the same figures
with the thresholds used per class.
"""
import argparse
import json
import logging
import os
import os.path as osp
import posixpath
import random
import sys
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

TIERS = ('confident', 'ignored', 'dropped')
BRANCH = 'unsup_teacher'


# ---------------------------------------------------------------- scoring (plain functions)
def boxes_to_original(boxes, homography):
    """Boxes (N, 4) of a view back in the original image's frame.

    ``homography`` maps the original image to the view (what mmdet's transforms record);
    the original image is the view whose homography is the identity, so this is the
    projection from the view "onto" it.
    """
    from ssl_det.structures import project_boxes, weak_to_strong_homography
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    homography = torch.as_tensor(np.asarray(homography), dtype=torch.float64)
    to_original = weak_to_strong_homography(homography, torch.eye(3, dtype=torch.float64))
    return project_boxes(boxes, to_original)


def match_tiers(pred_boxes, pred_scores, pred_labels, pred_tiers, gt_boxes, gt_labels,
                num_classes: int, iou_thr: float = 0.5) -> Dict[str, np.ndarray]:
    """Match one image's tiered predictions with its hidden boxes and count.

    Greedy in descending score over all tiers together (ties keep the input order): a
    prediction takes the unmatched hidden box of its own class with the highest IoU, if
    that IoU is at least ``iou_thr``; a prediction whose only such boxes are already taken
    is a false positive counted as a duplicate.

    Args:
        pred_boxes: (N, 4) ``x1, y1, x2, y2`` in the hidden boxes' frame.
        pred_scores: (N,) scores.
        pred_labels: (N,) class indices.
        pred_tiers: (N,) tier indices into :data:`TIERS` (0 confident, 1 ignored, 2 dropped).
        gt_boxes: (M, 4) hidden boxes.
        gt_labels: (M,) their class indices.
        num_classes (int): C.
        iou_thr (float): IoU a match needs. Default: 0.5.

    Returns:
        dict: ``boxes``, ``matched``, ``duplicates`` as (C, 3) int64 counts (class, tier)
        and ``gts`` as (C,) int64; the hidden boxes of class c found by tier t are
        ``matched[c, t]`` (a match pairs one prediction with one hidden box). Also
        ``true_positive``: (N,) bool, which predictions (in input order) took a hidden box.
    """
    from mmdet.structures.bbox import bbox_overlaps
    pred_boxes = torch.as_tensor(pred_boxes, dtype=torch.float32).reshape(-1, 4)
    gt_boxes = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    scores = torch.as_tensor(pred_scores, dtype=torch.float32).reshape(-1)
    labels = torch.as_tensor(pred_labels).long().reshape(-1)
    tiers = torch.as_tensor(pred_tiers).long().reshape(-1)
    gt_labels = torch.as_tensor(gt_labels).long().reshape(-1)
    if not len(labels) == len(scores) == len(tiers) == len(pred_boxes) or \
            len(gt_labels) != len(gt_boxes):
        raise ValueError('match_tiers: the predictions (or the hidden boxes) have fields of '
                         'different lengths')
    for name, values, high in (('pred_labels', labels, num_classes),
                               ('gt_labels', gt_labels, num_classes),
                               ('pred_tiers', tiers, len(TIERS))):
        if len(values) and (int(values.min()) < 0 or int(values.max()) >= high):
            raise ValueError(f'match_tiers: {name} must lie in [0, {high}), got '
                             f'{values.tolist()}')
    counts = dict(boxes=np.zeros((num_classes, len(TIERS)), np.int64),
                  matched=np.zeros((num_classes, len(TIERS)), np.int64),
                  duplicates=np.zeros((num_classes, len(TIERS)), np.int64),
                  gts=np.bincount(gt_labels.numpy(), minlength=num_classes).astype(np.int64))
    np.add.at(counts['boxes'], (labels.numpy(), tiers.numpy()), 1)
    counts['true_positive'] = np.zeros(len(labels), dtype=bool)
    if not len(labels) or not len(gt_labels):
        return counts
    iou = bbox_overlaps(pred_boxes, gt_boxes)  # (N, M)
    hits = (iou >= iou_thr) & (labels[:, None] == gt_labels[None, :])
    taken = torch.zeros(len(gt_labels), dtype=torch.bool)
    for i in torch.sort(scores, descending=True, stable=True).indices.tolist():
        if not hits[i].any():
            continue
        free = hits[i] & ~taken
        label, tier = int(labels[i]), int(tiers[i])
        if free.any():
            best = int(torch.where(free, iou[i], iou.new_tensor(-1.0)).argmax())
            taken[best] = True
            counts['matched'][label, tier] += 1
            counts['true_positive'][i] = True
        else:
            counts['duplicates'][label, tier] += 1
    return counts


def average_precision(scores, true_positive, num_gts: int) -> Optional[float]:
    """Area under the interpolated precision-recall curve (every point, as VOC 2010+ and
    COCO's per-threshold AP without its 101-point sampling) of predictions ranked by score;
    None without hidden boxes."""
    if not num_gts:
        return None
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    hit = np.asarray(true_positive, dtype=bool).reshape(-1)[np.argsort(-scores, kind='stable')]
    tp, fp = np.cumsum(hit), np.cumsum(~hit)
    recall = np.concatenate([[0.0], tp / num_gts, [1.0]])
    precision = np.concatenate([[0.0], tp / np.maximum(tp + fp, 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def teacher_ap(ranked: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]],
               gts: np.ndarray) -> dict:
    """Per class and mean (over the classes with hidden boxes) :func:`average_precision`
    of every prediction, whatever its tier: ``ranked`` holds per image (labels, scores,
    true_positive)."""
    labels = np.concatenate([r[0] for r in ranked]) if ranked else np.zeros(0, int)
    scores = np.concatenate([r[1] for r in ranked]) if ranked else np.zeros(0)
    hits = np.concatenate([r[2] for r in ranked]) if ranked else np.zeros(0, bool)
    per_class = [average_precision(scores[labels == c], hits[labels == c], int(gts[c]))
                 for c in range(len(gts))]
    known = [v for v in per_class if v is not None]
    return dict(mean=float(np.mean(known)) if known else None, per_class=per_class)


def score_image(pred_boxes, pred_scores, pred_labels, pred_tiers, homography, gt_boxes,
                gt_labels, num_classes: int, iou_thr: float = 0.5) -> Dict[str, np.ndarray]:
    """:func:`match_tiers` for predictions made on a view (``pred_boxes`` in the view's
    pixels, ``homography`` original → view) and hidden boxes of the original image."""
    original = boxes_to_original(pred_boxes, homography)
    return match_tiers(original, pred_scores, pred_labels, pred_tiers, gt_boxes, gt_labels,
                       num_classes, iou_thr)


def _share(numerator, denominator) -> Optional[float]:
    return float(numerator) / float(denominator) if denominator else None


def tier_figures(boxes, matched, duplicates, gts: int, num_images: int) -> dict:
    """The figures of one row (a class, or all of them): ``boxes``, ``matched``,
    ``duplicates`` are (3,) counts per tier, ``gts`` the hidden boxes."""
    row = OrderedDict(gt_boxes=int(gts), gt_per_image=_share(gts, num_images))
    for t, tier in enumerate(TIERS):
        row[tier] = OrderedDict(
            boxes=int(boxes[t]), matched=int(matched[t]), duplicates=int(duplicates[t]),
            precision=_share(matched[t], boxes[t]), recall=_share(matched[t], gts),
            per_image=_share(boxes[t], num_images))
    row['recall_confident_ignored'] = _share(matched[0] + matched[1], gts)
    return row


def summarize(counts: Dict[str, np.ndarray], num_images: int,
              class_names: Sequence[str]) -> dict:
    """Per-class and overall figures from summed :func:`match_tiers` counts."""
    classes = OrderedDict(
        (name, tier_figures(counts['boxes'][c], counts['matched'][c],
                            counts['duplicates'][c], counts['gts'][c], num_images))
        for c, name in enumerate(class_names))
    overall = tier_figures(counts['boxes'].sum(0), counts['matched'].sum(0),
                           counts['duplicates'].sum(0), counts['gts'].sum(), num_images)
    return dict(overall=overall, classes=classes)


def empty_counts(num_classes: int) -> Dict[str, np.ndarray]:
    return dict(boxes=np.zeros((num_classes, len(TIERS)), np.int64),
                matched=np.zeros((num_classes, len(TIERS)), np.int64),
                duplicates=np.zeros((num_classes, len(TIERS)), np.int64),
                gts=np.zeros(num_classes, np.int64))


# ---------------------------------------------------------------- hidden labels
def load_hidden_labels(ann_file: str, class_names: Sequence[str]) -> Tuple[dict, dict]:
    """``({image id: (file name, boxes (M, 4) xyxy, labels (M,))}, skipped)`` from a COCO
    file; categories are matched to ``class_names`` by name. ``skipped`` counts the crowd
    boxes and the boxes of categories outside ``class_names``, which are not scored."""
    from ssl_det.datasets.semi_checks import coco_categories, coco_images, load_coco
    coco = load_coco(ann_file)
    categories = coco_categories(coco, ann_file, '--hidden-labels')
    known = {cat_id: class_names.index(name) for cat_id, name in categories.items()
             if name in class_names}
    if not known:
        raise ValueError(f'--hidden-labels {ann_file}: none of its categories '
                         f'{sorted(categories.values())} is a class of the config '
                         f'{list(class_names)}')
    images = {int(img['id']): (str(img.get('file_name', '')), [], [])
              for img in coco_images(coco, ann_file, '--hidden-labels')}
    skipped = dict(crowd=0, other_category=0)
    for ann in coco.get('annotations') or []:
        entry = images.get(int(ann.get('image_id', -1)))
        if entry is None:
            continue
        if ann.get('iscrowd', 0):
            skipped['crowd'] += 1
            continue
        if int(ann['category_id']) not in known:
            skipped['other_category'] += 1
            continue
        x, y, w, h = (float(v) for v in ann['bbox'])
        entry[1].append([x, y, x + w, y + h])
        entry[2].append(known[int(ann['category_id'])])
    hidden = {img_id: (name, np.asarray(boxes, np.float32).reshape(-1, 4),
                       np.asarray(labels, np.int64))
              for img_id, (name, boxes, labels) in images.items()}
    return hidden, skipped


def pair_hidden_images(images: Sequence[Tuple[int, str, str]], hidden: dict,
                       hidden_file: str) -> Dict[int, tuple]:
    """``{image id: hidden entry}`` for every ``(image id, image path, unlabeled ann file)``.

    Images are paired by file, not by id: a hidden image pairs with an unlabeled one when its
    ``file_name`` ends the unlabeled image's path (``b/1.jpg`` pairs with
    ``data/images/b/1.jpg``). A split of the hidden file keeps its ids, but an unlabeled file
    written by ``images_to_coco.py`` numbers its images anew. An image that pairs with none, or
    with several, is a ValueError naming it."""
    by_base: Dict[str, list] = {}
    for entry in hidden.values():
        name = posixpath.normpath(entry[0].replace('\\', '/'))
        by_base.setdefault(osp.basename(name), []).append((name, entry))
    paired = {}
    for img_id, img_path, ann_file in images:
        path = '/' + img_path.replace('\\', '/')
        found = [entry for name, entry in by_base.get(osp.basename(path), [])
                 if path.endswith('/' + name)]
        if len(found) != 1:
            what = 'is not' if not found else f'matches {len(found)} images'
            raise ValueError(
                f'image id {img_id} ({img_path}) of the unlabeled split {ann_file} {what} in '
                f'--hidden-labels {hidden_file} (paired by file name); pass the labeled file '
                'that holds the unlabeled images\' boxes, with file names relative to the '
                'same image folder (e.g. annotations/instances_train.json)')
        paired[img_id] = found[0]
    return paired


# ---------------------------------------------------------------- model and data
def load_teacher_student(cfg, checkpoint: str, device: str):
    """The config's teacher-student model with ``checkpoint`` loaded; returns
    ``(model, thresholds_source)``."""
    from ssl_det.models.detectors.teacher_student import TeacherStudent
    from ssl_det.registry import MODELS
    from ssl_det.utils.checkpoint import load_checkpoint_file
    model = MODELS.build(cfg.model)
    if not isinstance(model, TeacherStudent):
        raise ValueError(f'{cfg.filename}: model.type={cfg.model.get("type")!r} is not a '
                         'TeacherStudent or SoftTeacher model; pass the semi-supervised '
                         'config the checkpoint was trained with')
    loaded = load_checkpoint_file(checkpoint, map_location='cpu')
    state = loaded.get('state_dict', loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not state:
        raise ValueError(f'{checkpoint} holds no state_dict')
    state = OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                        for k, v in state.items())
    # TeacherStudent._load_from_state_dict fills teacher and student from a plain detector.
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k.startswith('teacher.')]
    # a policy state the config's policy has no use for (another policy tried on the same
    # checkpoint) is left out; anything else that does not fit is an error
    unexpected = [k for k in result.unexpected_keys if not k.startswith('pseudo_label.')]
    if missing or unexpected:
        raise ValueError(
            f'{checkpoint} does not fit the model of {cfg.filename}: '
            f'{len(missing)} teacher weight(s) missing (e.g. {missing[:3]}), '
            f'{len(unexpected)} unexpected key(s) (e.g. {unexpected[:3]}); pass the config '
            'it was trained with')
    policy_state = [k for k in model.state_dict() if k.startswith('pseudo_label.')]
    if not policy_state:
        source = 'config'
        if result.unexpected_keys:
            source += (f" (the checkpoint's pseudo-label state is not used by "
                       f'{type(model.pseudo_label).__name__})')
    elif any(k in result.missing_keys for k in policy_state):
        source = 'config (initial values: the checkpoint holds no pseudo-label state)'
    else:
        source = 'checkpoint'
    if cfg.get('fast_roi_align', True):
        from ssl_det.ops import replace_roi_align
        replace_roi_align(model)
    from ssl_det.utils.launch import use_fast_nms
    use_fast_nms(cfg)  # as tools/train.py and tools/test.py do
    return model.to(device).eval(), source


def _branch_config(pipeline: list) -> Optional[Tuple[int, dict]]:
    """``(index, MultiBranch config)`` of the pipeline step with an ``unsup_teacher``
    branch, or None."""
    for i, step in enumerate(pipeline or []):
        if isinstance(step, dict) and str(step.get('type', '')).split('.')[-1] == \
                'MultiBranch' and BRANCH in step:
            return i, step
    return None


def _is_crop(step) -> bool:
    """A pipeline step that crops at random (mmdet's RandomCrop and its kin)."""
    return isinstance(step, dict) and 'Crop' in str(step.get('type', '')).split('.')[-1]


def _leaf_configs(dataset_cfg) -> List[dict]:
    """The dataset configs that read files, under Concat/Repeat-style wrappers."""
    if 'datasets' in dataset_cfg:
        return [leaf for sub in dataset_cfg['datasets'] for leaf in _leaf_configs(sub)]
    if 'dataset' in dataset_cfg:
        return _leaf_configs(dataset_cfg['dataset'])
    return [dataset_cfg]


def unlabeled_datasets(cfg) -> list:
    """The train datasets whose images the teacher labels (a ``MultiBranch`` with an
    ``unsup_teacher`` branch), built with that weak-view branch alone."""
    import copy

    from mmengine.logging import print_log

    from ssl_det.registry import DATASETS
    leaves = []
    for leaf in _leaf_configs(cfg.train_dataloader.dataset):
        found = _branch_config(leaf.get('pipeline'))
        if found is None:
            continue
        index, branch = found
        leaf = copy.deepcopy(leaf)
        leaf['pipeline'][index] = dict(type=branch['type'], branch_field=[BRANCH],
                                       **{BRANCH: branch[BRANCH]})
        # a random crop before the views (e.g. configs/deeppcb) would hide most hidden
        # boxes from the teacher: it scores whole images instead
        crops = [s for s in leaf['pipeline'][:index] if _is_crop(s)]
        if crops:
            print_log(f'scoring whole images: left out {[s["type"] for s in crops]} before '
                      "the teacher's view", logger='current')
            leaf['pipeline'] = [s for s in leaf['pipeline'] if not any(s is c for c in crops)]
        dataset = DATASETS.build(leaf)
        if getattr(dataset, 'is_unlabeled', lambda: True)() is False:
            print_log(f'{dataset.ann_file} (the teacher\'s images) holds annotations; they '
                      'are not used: the hidden labels are read from --hidden-labels',
                      logger='current', level=logging.WARNING)
        leaves.append(dataset)
    if not leaves:
        raise ValueError(f'{cfg.filename}: no dataset of train_dataloader has a MultiBranch '
                         f"step with an '{BRANCH}' branch (the teacher's weak view); pass "
                         'the semi-supervised config the checkpoint was trained with')
    return leaves


class SeededSamples(torch.utils.data.Dataset):
    """``(dataset, index)`` pairs, each loaded with the random generators seeded from
    ``seed`` and its position, so random steps (the weak view's flip) are the same whatever
    the batch size or the number of workers."""

    def __init__(self, items: List[Tuple[object, int]], seed: int) -> None:
        self.items, self.seed = items, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        dataset, index = self.items[i]
        seed = (self.seed + i) % 2**31
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        return dataset[index]


@torch.no_grad()
def teacher_tiers(model, inputs, samples) -> List[tuple]:
    """The teacher's predictions on a weak-view batch, split as training splits them:
    per image ``(boxes, scores, labels, tiers)`` in the view's pixels."""
    from ssl_det.models.soft_teacher.selection import select_pseudo_labels
    from ssl_det.models.soft_teacher.soft_teacher import SoftTeacher
    predictions = model.teacher_predict(inputs, samples)
    scores = torch.cat([p.scores for p in predictions])
    labels = torch.cat([p.labels for p in predictions])
    split = model.pseudo_label(scores, labels)  # no update(): thresholds stay as loaded
    confident, ignored = split.confident, split.ignored
    if isinstance(model, SoftTeacher):
        # the classifier's pseudo boxes: the policy's, above initial_score_thr
        selection = select_pseudo_labels(scores, split, torch.full_like(scores, float('inf')),
                                         model.initial_score_thr, model.rpn_pseudo_thr,
                                         model.reg_pseudo_thr)
        confident, ignored = selection.cls, selection.ignored
    tiers = torch.full_like(labels, TIERS.index('dropped'))
    tiers[ignored] = TIERS.index('ignored')
    tiers[confident] = TIERS.index('confident')
    sizes = [len(p) for p in predictions]
    return [(p.bboxes.cpu(), p.scores.cpu(), p.labels.cpu(), t.cpu())
            for p, t in zip(predictions, tiers.split(sizes))]


def thresholds_used(model, class_names: Sequence[str], source: str) -> dict:
    """The per-class thresholds the split used, where they came from, and the floors."""
    from ssl_det.models.soft_teacher.soft_teacher import SoftTeacher
    policy = model.pseudo_label
    values = policy.thresholds()
    num = len(class_names)
    high = values['high'].expand(num) if values['high'].numel() == 1 else values['high']
    low = values['low'].expand(num) if values['low'].numel() == 1 else values['low']
    out = OrderedDict(policy=type(policy).__name__, source=source,
                      classes=OrderedDict((name, dict(high=float(high[c]), low=float(low[c])))
                                          for c, name in enumerate(class_names)))
    if 'num_updates' in dict(policy.named_buffers()):
        out['policy_updates'] = int(policy.num_updates)
    if isinstance(model, SoftTeacher):
        out['initial_score_thr'] = model.initial_score_thr
    # the teacher's own floor: a two-stage detector's rcnn.score_thr, a one-stage one's score_thr
    test_cfg = getattr(model.teacher, 'test_cfg', None) or {}
    test_cfg = test_cfg.get('rcnn', None) or test_cfg
    out['test_score_thr'] = test_cfg.get('score_thr', None)
    return out


def evaluate(cfg, checkpoint: str, hidden_file: str, iou_thr: float = 0.5,
             max_images: Optional[int] = None, batch_size: int = 8, num_workers: int = 2,
             seed: int = 0, device: str = 'cpu') -> dict:
    """Everything the tool reports (see the module doc), as a dict."""
    from mmengine.dataset import pseudo_collate
    from mmengine.logging import print_log
    datasets = unlabeled_datasets(cfg)
    class_names = list(datasets[0].metainfo['classes'])
    items = [(d, i) for d in datasets for i in range(len(d))][:max_images]
    hidden, skipped = load_hidden_labels(hidden_file, class_names)
    paired = pair_hidden_images([(int(d.get_data_info(i)['img_id']),
                                  d.get_data_info(i)['img_path'], d.ann_file)
                                 for d, i in items], hidden, hidden_file)
    model, source = load_teacher_student(cfg, checkpoint, device)
    loader = torch.utils.data.DataLoader(SeededSamples(items, seed), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=pseudo_collate)
    counts = empty_counts(len(class_names))
    ranked = []  # per image (labels, scores, true_positive), for the teacher's AP
    seen, unreadable = set(), []
    for step, batch in enumerate(loader, 1):
        data = model.data_preprocessor(batch, True)  # the multi-branch path of training
        samples = data['data_samples'][BRANCH]
        for sample, (boxes, scores, labels, tiers) in zip(
                samples, teacher_tiers(model, data['inputs'][BRANCH], samples)):
            unreadable += list(sample.metainfo.get('skipped_unreadable') or [])
            if sample.img_id in seen:  # an unreadable image's stand-in, already scored
                continue
            seen.add(sample.img_id)
            _, gt_boxes, gt_labels = paired[sample.img_id]
            found = score_image(boxes, scores, labels, tiers, sample.homography_matrix,
                                gt_boxes, gt_labels, len(class_names), iou_thr)
            for key in counts:
                counts[key] += found[key]
            ranked.append((np.asarray(labels), np.asarray(scores), found['true_positive']))
        if step % 50 == 0 or step == len(loader):
            print_log(f'pseudo_label_quality: {len(seen)}/{len(items)} images scored',
                      logger='current')
    result = OrderedDict(
        config=cfg.filename, checkpoint=checkpoint, hidden_labels=hidden_file,
        unlabeled_ann_files=[d.ann_file for d in datasets], model=type(model).__name__,
        images=len(seen), iou_thr=iou_thr, seed=seed,
        thresholds=thresholds_used(model, class_names, source),
        not_scored=dict(crowd_boxes=skipped['crowd'],
                        other_category_boxes=skipped['other_category'],
                        unreadable_images=len(unreadable)))
    result.update(summarize(counts, max(len(seen), 1), class_names))
    ap = teacher_ap(ranked, counts['gts'])
    result['teacher_ap'] = ap['mean']
    for name, value in zip(class_names, ap['per_class']):
        result['classes'][name]['teacher_ap'] = value
    return result


# ---------------------------------------------------------------- report
def _fmt(value) -> str:
    return '-' if value is None else f'{value:.3f}'


def markdown_table(result: dict) -> str:
    """The figures of :func:`evaluate` as markdown."""
    header = ['class', 'gt']
    for tier in TIERS:
        header += [tier, 'P', 'R']
    header.insert(8, 'R conf+ign')
    lines = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    rows = list(result['classes'].items()) + [('**all**', result['overall'])]
    for name, row in rows:
        cells = [name, str(row['gt_boxes'])]
        for tier in TIERS:
            cells += [str(row[tier]['boxes']), _fmt(row[tier]['precision']),
                      _fmt(row[tier]['recall'])]
        cells.insert(8, _fmt(row['recall_confident_ignored']))
        lines.append('| ' + ' | '.join(cells) + ' |')
    overall = result['overall']
    lines.append('')
    lines.append(f'teacher AP at IoU {result["iou_thr"]:g} (every prediction ranked by its '
                 f'score, thresholds aside): {_fmt(result.get("teacher_ap"))} ('
                 + ', '.join(f'{name} {_fmt(row.get("teacher_ap"))}'
                             for name, row in result['classes'].items()) + ')')
    lines.append(f'per image ({result["images"]} images): gt {_fmt(overall["gt_per_image"])}'
                 + ''.join(f', {t} {_fmt(overall[t]["per_image"])}' for t in TIERS))
    thr = result['thresholds']
    lines += ['', f'thresholds ({thr["policy"]}, from {thr["source"]}):', '',
              '| class | high | low |', '| --- | --- | --- |']
    lines += [f'| {name} | {_fmt(v["high"])} | {_fmt(v["low"])} |'
              for name, v in thr['classes'].items()]
    floors = [f'{key} {thr[key]}' for key in ('initial_score_thr', 'test_score_thr')
              if thr.get(key) is not None]
    if floors:
        lines += ['', 'also: ' + ', '.join(floors)]
    return '\n'.join(lines)


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the semi-supervised config the checkpoint was '
                                       'trained with')
    parser.add_argument('checkpoint', help='teacher-student or plain detector checkpoint')
    parser.add_argument('--hidden-labels', required=True,
                        help='COCO file with the unlabeled images\' true boxes (the full '
                             'labeled file the split was made from)')
    parser.add_argument('--out', help='JSON file (default: <work_dir or the checkpoint\'s '
                                      'folder>/pseudo_label_quality.json)')
    parser.add_argument('--max-images', type=int, help='score the first N unlabeled images')
    parser.add_argument('--iou', type=float, default=0.5, help='IoU a match needs')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0,
                        help='seeds the weak view\'s random steps, per image')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow a checkpoint that needs full unpickling (can run code)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if not 0 < args.iou <= 1:
        parser.error(f'--iou must lie in (0, 1], got {args.iou}')
    if args.max_images is not None and args.max_images < 1:
        parser.error(f'--max-images must be at least 1, got {args.max_images}')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    import ssl_det  # noqa: F401  (registers every ssl_det module)
    from ssl_det.utils.checkpoint import UntrustedCheckpointError, trust_checkpoints
    if args.trust_checkpoint:
        trust_checkpoints(True)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'ssl_det'))
    out = args.out or osp.join(cfg.get('work_dir', None) or osp.dirname(
        osp.abspath(args.checkpoint)), 'pseudo_label_quality.json')
    try:
        result = evaluate(cfg, args.checkpoint, args.hidden_labels, args.iou, args.max_images,
                          args.batch_size, args.num_workers, args.seed, args.device)
    except (ValueError, FileNotFoundError, UntrustedCheckpointError) as exc:
        sys.exit(f'pseudo_label_quality: error: {exc}')
    print(markdown_table(result))
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'wrote {out}')
    return result


if __name__ == '__main__':
    main()
