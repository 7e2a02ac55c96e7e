"""Labeled/unlabeled splits of a COCO annotation file, as the semi-supervised literature uses.

Unlike mmdet's ``tools/misc/split_coco.py`` (which samples with replacement, so its "10%"
split holds fewer images than asked), a split here holds exactly ``round(pct% × images)``
labeled images drawn without replacement; the labeled and unlabeled files are disjoint and
together cover every image; reruns with the same seed write identical files.
Within a fold the splits are nested: the 1% images are among the 2% images, and so on.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, Iterator, List, Sequence, Set, Tuple

import numpy as np

from .semi_checks import coco_categories, coco_images, load_coco


def load_coco_json(ann_file: str) -> Dict:
    """Read a COCO file to split, with errors that name the file and what is wrong."""
    data = load_coco(ann_file)
    coco_images(data, ann_file, 'input')
    coco_categories(data, ann_file, 'input')
    return data


def num_labeled(num_images: int, percent: float) -> int:
    """Exactly ``round(percent% × num_images)`` (halves round up), validated."""
    if not 0 < percent < 100:
        raise ValueError(f'percent must be in (0, 100), got {percent}')
    count = int(math.floor(num_images * percent / 100 + 0.5))
    if count == 0 or count == num_images:
        side = 'labeled' if count == 0 else 'unlabeled'
        raise ValueError(f'{percent}% of {num_images} images leaves the {side} split empty')
    return count


def split_names(ann_file: str, out_dir: str, fold: int, percent: float) -> Tuple[str, str]:
    """mmdet's file names: ``{stem}.{fold}@{pct}.json`` and ``...-unlabeled.json``."""
    stem = osp.splitext(osp.basename(ann_file))[0]
    tag = f'{stem}.{fold}@{percent:g}'
    return osp.join(out_dir, f'{tag}.json'), osp.join(out_dir, f'{tag}-unlabeled.json')


def _subset(data: Dict, image_ids: set, with_annotations: bool) -> Dict:
    out = {k: v for k, v in data.items() if k not in ('images', 'annotations')}
    out['images'] = [img for img in data['images'] if img['id'] in image_ids]
    out['annotations'] = [ann for ann in data.get('annotations', [])
                          if ann['image_id'] in image_ids] if with_annotations else []
    return out


def fold_splits(ids: np.ndarray, percents: Sequence[float], counts: Sequence[int], folds: int,
                seed: int) -> Iterator[Tuple[int, float, Set, Set]]:
    """``(fold, percent, labeled ids, unlabeled ids)`` for every fold (from 1) and percentage:
    fold ``k`` draws one permutation of the sorted ``ids`` seeded by ``(seed, k)`` and labels
    its first ``counts[i]`` entries, so a fold's percentages are nested, the two sets are
    disjoint and cover every id. Shared by the COCO and the point-cloud split tools."""
    all_ids = set(ids.tolist())
    for fold in range(1, folds + 1):
        order = np.random.default_rng([seed, fold]).permutation(len(ids))
        for percent, count in zip(percents, counts):
            labeled = set(ids[order[:count]].tolist())
            yield fold, percent, labeled, all_ids - labeled


def split_coco(ann_file: str, percents: Sequence[float], folds: int, out_dir: str,
               seed: int = 1) -> List[Tuple[str, str]]:
    """Write labeled/unlabeled files for every fold (from 1) and percentage.

    Args:
        ann_file: the COCO file to split; it is only read.
        percents: labeled percentages, each in (0, 100); fractions such as 0.5 allowed.
        folds: number of folds; fold ``k`` uses its own permutation seeded by ``(seed, k)``.
        out_dir: where the files go (created if missing).
        seed: base seed. Default: 1.

    Returns:
        ``[(labeled_file, unlabeled_file), ...]`` in fold, then percent order.
    """
    if folds < 1:
        raise ValueError(f'folds must be >= 1, got {folds}')
    data = load_coco_json(ann_file)
    ids = np.array(sorted(img['id'] for img in data['images']))
    if len(set(ids.tolist())) != len(ids):
        raise ValueError(f'{ann_file} has duplicate image ids')
    counts = [num_labeled(len(ids), p) for p in percents]
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for fold, percent, labeled, unlabeled in fold_splits(ids, percents, counts, folds, seed):
        names = split_names(ann_file, out_dir, fold, percent)
        for path, subset in zip(names, (_subset(data, labeled, True),
                                        _subset(data, unlabeled, False))):
            if osp.abspath(path) == osp.abspath(ann_file):
                raise ValueError(f'refusing to overwrite the input file {ann_file}')
            with open(path, 'w') as f:
                json.dump(subset, f)
        written.append(names)
    return written
