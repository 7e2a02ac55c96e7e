"""mmdet's CocoDataset with start-up errors that name the file at fault."""
from typing import List, Optional

from mmdet.datasets import CocoDataset as MMDetCocoDataset

from ssl_det.registry import DATASETS
from .semi_checks import check_coco_content
from .unreadable import UNREADABLE_MODES, SkipUnreadableMixin


@DATASETS.register_module()
class CocoDataset(SkipUnreadableMixin, MMDetCocoDataset):
    """mmdet's ``CocoDataset``; an annotation file left with zero images (empty, or all
    filtered out by ``filter_cfg``) raises a ValueError naming it, where mmdet fails later
    with ``need at least one array to concatenate``.

    The file's ``categories`` (the list of dicts, as in the file) stay available as
    ``file_categories`` after loading, which drops the rest of the file: ``DataCheckHook``
    compares the labeled and unlabeled files' categories with them instead of reading both
    files again (a million-image unlabeled file is ~0.7 GB of Python objects, on every rank).
    ``None`` until the file is loaded.

    An image that cannot be read while training (missing, truncated, undecodable: see
    ssl_det's ``LoadImageFromFile``) is skipped in an unlabeled file (one without any
    annotation, such as COCO's unlabeled2017 or the unlabeled half of a split) and the next
    image taken instead, counted and named in the log; in labeled data it raises, naming
    the file. ``unreadable='skip'`` / ``'error'`` sets either behaviour for any file.

    ssl_det's configs (``default_scope='ssl_det'``) build it for ``type='CocoDataset'``;
    from an mmdet config write ``type='ssl_det.CocoDataset'``.

    Args:
        unreadable (str): ``'auto'`` (default), ``'skip'`` or ``'error'``, as above.
        *args, **kwargs: mmdet's ``CocoDataset`` arguments.
    """

    file_categories: Optional[List[dict]] = None
    has_annotations: Optional[bool] = None

    def __init__(self, *args, unreadable: str = 'auto', **kwargs) -> None:
        if unreadable not in UNREADABLE_MODES:
            raise ValueError(f'unreadable must be one of {UNREADABLE_MODES}, got '
                             f'{unreadable!r}')
        self.unreadable = unreadable
        super().__init__(*args, **kwargs)

    def is_unlabeled(self) -> bool:
        """An annotation file without a single annotation: an unlabeled pool."""
        return self.has_annotations is False

    # mmdet's load_data_list sets `self.coco` (the parsed file), reads it, then deletes it;
    # the setter keeps the file's categories on the way.
    @property
    def coco(self):
        try:
            return self._coco
        except AttributeError:
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute 'coco'") from None

    @coco.setter
    def coco(self, api) -> None:
        self._coco = api
        content = getattr(api, 'dataset', None)
        self.file_categories = ([dict(cat) for cat in content.get('categories') or []]
                                if isinstance(content, dict) else None)
        if isinstance(content, dict):
            self.has_annotations = bool(content.get('annotations'))
            check_coco_content(content, self.ann_file)

    @coco.deleter
    def coco(self) -> None:
        del self._coco

    def filter_data(self) -> List[dict]:
        data_list = super().filter_data()
        if not data_list:
            raise ValueError(
                f'{self.ann_file} has zero images (after filter_cfg={self.filter_cfg}); '
                'check the file and the split you made')
        return data_list
