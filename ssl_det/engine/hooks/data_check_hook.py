"""Start-up checks of the data: fail before the first iteration, naming the file at fault."""
import os.path as osp
from typing import Iterator, List

from mmdet.datasets import CocoDataset as MMDetCocoDataset
from mmengine.dataset import ConcatDataset, RepeatDataset
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ssl_det.datasets.semi_checks import check_semi_split
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
        if missing:
            raise FileNotFoundError(
                f'{len(missing)} image(s) listed in {ann_file} are missing on disk, e.g. '
                f'{missing[0]}; check data_root / data_prefix in the {role} dataloader')
        total += len(leaf)
    # Labeled and unlabeled COCO files must agree on their categories, or the unlabeled
    # branch silently trains with shifted or missing labels.
    coco_files = [leaf.ann_file for leaf in leaves
                  if str(getattr(leaf, 'ann_file', '')).endswith('.json')
                  and isinstance(leaf, MMDetCocoDataset)]
    for other in coco_files[1:]:
        check_semi_split(coco_files[0], other)
    return total


@HOOKS.register_module()
class DataCheckHook(Hook):
    """Check the train/val/test data before the loops start.

    Missing annotation files already fail when the dataset loads; this hook adds: a split
    with zero images, images listed but absent on disk, and category lists that differ
    between the files of one concatenated (labeled + unlabeled) dataset.

    Args:
        check_images (bool): stat every image path (fast for local files). Default: True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, check_images: bool = True) -> None:
        self.check_images = check_images
        self._checked = set()  # validation runs many times; its data is checked once

    def _check(self, loop, role: str) -> None:
        if role in self._checked:
            return
        self._checked.add(role)
        count = check_dataset(loop.dataloader.dataset, role, self.check_images)
        print_log(f'{role} data checked: {count} images', logger='current')

    def before_train(self, runner) -> None:
        self._check(runner.train_loop, 'train')

    def before_val(self, runner) -> None:
        self._check(runner.val_loop, 'val')

    def before_test(self, runner) -> None:
        self._check(runner.test_loop, 'test')
