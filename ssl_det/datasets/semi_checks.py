"""Start-up checks for a labeled/unlabeled COCO split, before hours of training go to waste.

Categories that differ between the two files make CocoDataset map the unlabeled images'
classes differently (or not at all), which shows up much later as all-zero unsupervised
losses or nonsense pseudo labels.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from mmengine import fileio


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
    if labeled_cats != unlabeled_cats:
        raise ValueError(
            f'The categories of the labeled file {labeled_ann_file} and the unlabeled file '
            f'{unlabeled_ann_file} differ ({_describe_difference(labeled_cats, unlabeled_cats)}). '
            'Pseudo labels would map to the wrong classes; give both files the same '
            '`categories` list.')
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
