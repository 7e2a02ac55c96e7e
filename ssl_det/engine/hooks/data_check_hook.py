"""Start-up checks of the data: fail before the first iteration, naming the file at fault."""
import logging
import os.path as osp
from typing import Iterator, List

from mmdet.datasets import CocoDataset as MMDetCocoDataset
from mmengine.dataset import ConcatDataset, RepeatDataset
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ssl_det.datasets.semi_checks import (check_same_categories, check_semi_split,
                                           coco_categories)
from ssl_det.datasets.unreadable import SKIPPED_KEY, TOKEN_KEY
from ssl_det.registry import HOOKS


def leaf_datasets(dataset) -> Iterator:
    """The datasets that read files, under ConcatDataset/RepeatDataset-style wrappers."""
    if isinstance(dataset, ConcatDataset) or hasattr(dataset, 'datasets'):
        for sub in dataset.datasets:
            yield from leaf_datasets(sub)
    elif isinstance(dataset, RepeatDataset) or hasattr(dataset, 'dataset'):
        yield from leaf_datasets(dataset.dataset)
    else:
        yield dataset


def missing_images(dataset) -> List[str]:
    """Local image paths listed by ``dataset`` that are not on disk."""
    backend = (getattr(dataset, 'backend_args', None) or {}).get('backend', 'local')
    if backend != 'local':
        return []
    missing = []
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        path = info.get('img_path', info.get('lidar_path'))
        if path is not None and '://' not in path and not osp.isfile(path):
            missing.append(path)
    return missing


def skipped_in_batch(data_batch) -> List[str]:
    """The unreadable files a batch's samples were drawn in place of (their metainfo's
    ``skipped_unreadable``), once per draw: the views of one draw (weak and strong) carry
    copies of one record with the same ``skipped_unreadable_token``; two draws of the same
    file have different tokens and count twice."""
    samples = data_batch.get('data_samples') if isinstance(data_batch, dict) else None
    found, seen = [], set()

    def visit(item):
        if isinstance(item, dict):
            for value in item.values():
                visit(value)
        elif isinstance(item, (list, tuple)):
            for value in item:
                visit(value)
        elif item is not None and hasattr(item, 'metainfo'):
            skipped = item.metainfo.get(SKIPPED_KEY)
            if not skipped:
                return
            # a record without a token (made elsewhere): one per list object, as before
            key = item.metainfo.get(TOKEN_KEY) or id(skipped)
            if key not in seen:
                seen.add(key)
                found.extend(skipped)
    visit(samples)
    return found


def check_dataset(dataset, role: str, check_images: bool = True) -> int:
    """Raise on an empty split, missing images or a category mismatch; return the number
    of images checked."""
    total = 0
    leaves = list(leaf_datasets(dataset))
    for leaf in leaves:
        ann_file = getattr(leaf, 'ann_file', '<no ann_file>')
        if len(leaf) == 0:
            raise ValueError(
                f'{role} split {ann_file} has zero images (after filter_cfg='
                f'{getattr(leaf, "filter_cfg", None)}); check the file and the split you made')
        missing = missing_images(leaf) if check_images else []
        skips = getattr(leaf, 'skips_unreadable', None)
        if missing and skips is not None and skips():
            print_log(f'{len(missing)} of the {len(leaf)} files listed in {ann_file} are '
                      f'missing on disk (e.g. {missing[:3]}); they will be skipped while '
                      f'training (this {role} dataset skips unreadable files: '
                      f'unreadable={leaf.unreadable!r}) and each skip counted in '
                      'train/skipped_unreadable', logger='current', level=logging.WARNING)
        elif missing:
            raise FileNotFoundError(
                f'{len(missing)} image(s) listed in {ann_file} are missing on disk, e.g. '
                f'{missing[0]}; check data_root / data_prefix in the {role} dataloader')
        total += len(leaf)
    # Labeled and unlabeled COCO files must agree on their categories, or the unlabeled
    # branch silently trains with shifted or missing labels.
    coco_leaves = [leaf for leaf in leaves
                   if str(getattr(leaf, 'ann_file', '')).endswith('.json')
                   and isinstance(leaf, MMDetCocoDataset)]
    for other in coco_leaves[1:]:
        check_split_categories(coco_leaves[0], other)
    return total


def check_split_categories(labeled, unlabeled) -> None:
    """The category check of :func:`check_semi_split` for two loaded COCO datasets: with the
    categories ssl_det's ``CocoDataset`` kept (``file_categories``) when both have them,
    without reading the files again; otherwise (e.g. mmdet's ``CocoDataset``) from the
    files."""
    kept = [getattr(dataset, 'file_categories', None) for dataset in (labeled, unlabeled)]
    if any(categories is None for categories in kept):
        check_semi_split(labeled.ann_file, unlabeled.ann_file)
        return
    labeled_cats = coco_categories({'categories': kept[0]}, labeled.ann_file, 'labeled')
    unlabeled_cats = coco_categories({'categories': kept[1]}, unlabeled.ann_file, 'unlabeled')
    check_same_categories(labeled_cats, unlabeled_cats, labeled.ann_file, unlabeled.ann_file)


@HOOKS.register_module()
class DataCheckHook(Hook):
    """Check the train/val/test data before the loops start.

    Missing annotation files already fail when the dataset loads; this hook adds: a split
    with zero images, images listed but absent on disk (an error, or a warning with the
    count for a dataset that skips unreadable files, such as an unlabeled pool), and
    category lists that differ between the files of one concatenated (labeled + unlabeled)
    dataset.

    While training it counts the files the datasets skipped because they could not be
    read (``skipped_unreadable`` in the samples' metainfo: missing, truncated or
    undecodable), once per draw however many views the sample has, logs each one with the
    reason, and logs the running total as ``train/skipped_unreadable``. The total is saved
    in every checkpoint (``ssl_det_counters``) and continues when the run resumes (not
    after ``load_from``, which starts a new run). Under DDP each rank counts its own
    samples; a resumed run continues from rank 0's count, the one logged.

    Args:
        check_images (bool): stat every image path (fast for local files). Default: True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, check_images: bool = True) -> None:
        self.check_images = check_images
        self._checked = set()  # validation runs many times; its data is checked once
        self.num_skipped = 0

    def _check(self, loop, role: str) -> None:
        if role in self._checked:
            return
        self._checked.add(role)
        count = check_dataset(loop.dataloader.dataset, role, self.check_images)
        print_log(f'{role} data checked: {count} images', logger='current')

    def before_train(self, runner) -> None:
        self._check(runner.train_loop, 'train')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        skipped = skipped_in_batch(data_batch)
        for message in skipped:
            self.num_skipped += 1
            print_log(f'iteration {runner.iter + 1}: skipped an unreadable file, {message} '
                      f'({self.num_skipped} skipped in the run)', logger='current',
                      level=logging.WARNING)
        runner.message_hub.update_scalar('train/skipped_unreadable', float(self.num_skipped))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # a plain int: the checkpoint still loads with torch.load(weights_only=True)
        checkpoint.setdefault('ssl_det_counters', {})['skipped_unreadable'] = \
            int(self.num_skipped)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        counters = checkpoint.get('ssl_det_counters') or {}
        if getattr(runner, '_resume', False) and 'skipped_unreadable' in counters:
            self.num_skipped = int(counters['skipped_unreadable'])

    def before_val(self, runner) -> None:
        self._check(runner.val_loop, 'val')

    def before_test(self, runner) -> None:
        self._check(runner.test_loop, 'test')
