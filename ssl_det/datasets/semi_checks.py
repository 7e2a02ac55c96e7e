"""Start-up checks for a labeled/unlabeled COCO split, before hours of training go to waste.

Categories that differ between the two files make CocoDataset map the unlabeled images'
classes differently (or not at all), which shows up much later as all-zero unsupervised
losses or nonsense pseudo labels.
"""
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
from mmengine import fileio
from mmengine.logging import print_log


@dataclass
class SemiSplitSummary:
    """What :func:`check_semi_split` found.

    Attributes:
        num_labeled_images (int): Images in the labeled file.
        num_unlabeled_images (int): Images in the unlabeled file.
        num_labeled_annotations (int): Annotations in the labeled file.
        categories (list[tuple[int, str]]): ``(id, name)`` of the shared categories, by id.
        num_shared_images (int): Images (by ``file_name``) present in both files; non-zero
            is legitimate (e.g. unlabeled = all of train2017) but worth knowing.
    """

    num_labeled_images: int
    num_unlabeled_images: int
    num_labeled_annotations: int
    categories: List[Tuple[int, str]] = field(default_factory=list)
    num_shared_images: int = 0


def load_coco(ann_file: str, backend_args: Optional[dict] = None) -> dict:
    """Load a COCO json, with errors that name the file."""
    if not fileio.exists(ann_file, backend_args=backend_args):
        raise FileNotFoundError(f'COCO annotation file not found: {ann_file}')
    try:
        coco = fileio.load(ann_file, file_format='json', backend_args=backend_args)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f'{ann_file} is not valid JSON: {exc}') from exc
    if not isinstance(coco, dict):
        raise ValueError(f'{ann_file} must hold a COCO dict with `images` and `categories`, '
                         f'got a {type(coco).__name__}.')
    return coco


def coco_categories(coco: dict, ann_file: str, role: str) -> Dict[int, str]:
    categories = coco.get('categories')
    if not categories:
        raise ValueError(
            f'The {role} file {ann_file} has no `categories`. Copy the `categories` list of the '
            'labeled file into it (tools/misc/split_coco.py writes it into both).')
    return {int(cat['id']): str(cat['name']) for cat in categories}


def coco_images(coco: dict, ann_file: str, role: str) -> list:
    images = coco.get('images') or []
    if len(images) == 0:
        raise ValueError(f'The {role} file {ann_file} has no images (`images` is empty or '
                         'missing); check the split that produced it.')
    return images


def _describe_difference(labeled: Dict[int, str], unlabeled: Dict[int, str]) -> str:
    parts = []
    only_labeled = sorted(set(labeled) - set(unlabeled))
    only_unlabeled = sorted(set(unlabeled) - set(labeled))
    renamed = sorted(i for i in set(labeled) & set(unlabeled) if labeled[i] != unlabeled[i])
    if only_labeled:
        parts.append('only in labeled: ' + ', '.join(f'{i}={labeled[i]!r}' for i in only_labeled))
    if only_unlabeled:
        parts.append('only in unlabeled: ' +
                     ', '.join(f'{i}={unlabeled[i]!r}' for i in only_unlabeled))
    if renamed:
        parts.append('different names: ' +
                     ', '.join(f'{i}: {labeled[i]!r} vs {unlabeled[i]!r}' for i in renamed))
    return '; '.join(parts)


def check_same_categories(labeled_cats: Dict[int, str], unlabeled_cats: Dict[int, str],
                          labeled_ann_file: str, unlabeled_ann_file: str) -> None:
    """Raise a ValueError naming both files and the differing ids and names unless the
    labeled and unlabeled files' categories (``{id: name}``) are the same."""
    if labeled_cats != unlabeled_cats:
        raise ValueError(
            f'The categories of the labeled file {labeled_ann_file} and the unlabeled file '
            f'{unlabeled_ann_file} differ ({_describe_difference(labeled_cats, unlabeled_cats)}). '
            'Pseudo labels would map to the wrong classes; give both files the same '
            '`categories` list.')


def check_semi_split(labeled_ann_file: str,
                     unlabeled_ann_file: str,
                     backend_args: Optional[dict] = None) -> SemiSplitSummary:
    """Check that a labeled and an unlabeled COCO file can be trained on together.

    Args:
        labeled_ann_file (str): Path of the labeled split's COCO json.
        unlabeled_ann_file (str): Path of the unlabeled split's COCO json.
        backend_args (dict, optional): mmengine file backend arguments, as datasets take.
            Defaults to None (local files).

    Returns:
        SemiSplitSummary: Image counts, annotation count and the shared categories.

    Raises:
        FileNotFoundError: A file does not exist (the message names its path).
        ValueError: A file is not a COCO json, has no images or no categories, or the two
            files' categories differ (the message names both files and the differing ids
            and names).
    """
    labeled = load_coco(labeled_ann_file, backend_args)
    unlabeled = load_coco(unlabeled_ann_file, backend_args)
    labeled_cats = coco_categories(labeled, labeled_ann_file, 'labeled')
    unlabeled_cats = coco_categories(unlabeled, unlabeled_ann_file, 'unlabeled')
    check_same_categories(labeled_cats, unlabeled_cats, labeled_ann_file, unlabeled_ann_file)
    labeled_images = coco_images(labeled, labeled_ann_file, 'labeled')
    unlabeled_images = coco_images(unlabeled, unlabeled_ann_file, 'unlabeled')
    labeled_names = {img.get('file_name') for img in labeled_images} - {None}
    shared = sum(img.get('file_name') in labeled_names for img in unlabeled_images)
    return SemiSplitSummary(
        num_labeled_images=len(labeled_images),
        num_unlabeled_images=len(unlabeled_images),
        num_labeled_annotations=len(labeled.get('annotations') or []),
        categories=sorted(labeled_cats.items()),
        num_shared_images=shared)


def check_coco_content(coco: dict, ann_file: str) -> Dict[str, int]:
    """Check a loaded COCO file's images and annotations, in one pass each (numpy, so a
    million-image file costs seconds, not Python objects per image).

    Raises a ValueError naming the file and examples for what would silently corrupt
    training: duplicated image ids (pycocotools keeps the last one, and its annotations
    go to the wrong image) and annotations whose ``category_id`` is not among the file's
    ``categories``. Logs one line with the counts of what mmdet's ``CocoDataset`` drops or
    keeps silently: boxes with zero or negative width/height (dropped), boxes entirely
    outside their image (dropped), boxes partly outside (kept; the transforms clip them),
    annotations of an image id the file does not list (never used).

    Returns:
        dict: The counts (``duplicate_image_ids``, ``unknown_category``, ``degenerate``,
        ``outside``, ``partly_outside``, ``unknown_image``).
    """
    images = coco.get('images') or []
    anns = coco.get('annotations') or []
    image_ids = np.fromiter((img['id'] for img in images), dtype=np.int64, count=len(images))
    unique, counts = np.unique(image_ids, return_counts=True)
    duplicated = unique[counts > 1]
    if duplicated.size:
        raise ValueError(f'{ann_file} lists {duplicated.size} image id(s) more than once '
                         f'(e.g. {duplicated[:5].tolist()}); pycocotools would keep one entry '
                         'per id and give its annotations to the wrong image. Give every '
                         'image its own id.')
    counts_out = dict(duplicate_image_ids=0, unknown_category=0, degenerate=0, outside=0,
                      partly_outside=0, unknown_image=0)
    if not anns:
        return counts_out
    known_cats = np.array(sorted({int(c['id']) for c in coco.get('categories') or []}),
                          dtype=np.int64)
    cat_ids = np.fromiter((a.get('category_id', -1) for a in anns), dtype=np.int64,
                          count=len(anns))
    unknown = ~np.isin(cat_ids, known_cats)
    if unknown.any():
        bad = np.unique(cat_ids[unknown])
        raise ValueError(f'{ann_file}: {int(unknown.sum())} annotation(s) have a category_id '
                         f'that is not in its `categories` ({bad[:5].tolist()}); fix the '
                         'annotations or add the categories.')
    ann_images = np.fromiter((a.get('image_id', -1) for a in anns), dtype=np.int64,
                             count=len(anns))
    position = np.searchsorted(unique, ann_images).clip(0, max(len(unique) - 1, 0))
    listed = unique.size > 0
    known_image = (unique[position] == ann_images) if listed else np.zeros(len(anns), bool)
    boxes = np.array([a.get('bbox') or [0, 0, 0, 0] for a in anns], dtype=np.float64)
    boxes = boxes.reshape(len(anns), 4)
    order = np.argsort(image_ids, kind='stable')
    sizes = np.array([[img.get('width') or np.inf, img.get('height') or np.inf]
                      for img in images], dtype=np.float64).reshape(-1, 2)[order]
    wh = sizes[position] if listed else np.full((len(anns), 2), np.inf)
    x1, y1, w, h = boxes.T
    degenerate = (w <= 0) | (h <= 0) | ~np.isfinite(boxes).all(1)
    inter_w = np.minimum(x1 + w, wh[:, 0]) - np.maximum(x1, 0)
    inter_h = np.minimum(y1 + h, wh[:, 1]) - np.maximum(y1, 0)
    valid = known_image & ~degenerate
    outside = valid & ((inter_w <= 0) | (inter_h <= 0))
    partly = valid & ~outside & ((x1 < 0) | (y1 < 0) | (x1 + w > wh[:, 0])
                                 | (y1 + h > wh[:, 1]))
    counts_out.update(degenerate=int((known_image & degenerate).sum()),
                      outside=int(outside.sum()), partly_outside=int(partly.sum()),
                      unknown_image=int((~known_image).sum()))
    found = {k: v for k, v in counts_out.items() if v}
    if found:
        ids = np.array([a.get('id', -1) for a in anns])
        examples = []
        for key, mask in (('degenerate', known_image & degenerate), ('outside', outside),
                          ('unknown_image', ~known_image)):
            if mask.any():
                examples.append(f'{key}: annotation id {ids[mask][0]}')
        print_log(f'{ann_file}: {len(anns)} annotations; {found} (degenerate = zero or '
                  'negative width/height or non-finite, and outside = no overlap with the '
                  'image: both dropped by the loader; partly_outside: kept and clipped by '
                  'the transforms; unknown_image: the image id is not listed, never used). '
                  'E.g. ' + '; '.join(examples), logger='current', level=logging.WARNING)
    return counts_out
