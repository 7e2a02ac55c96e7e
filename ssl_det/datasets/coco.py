"""mmdet's CocoDataset with start-up errors that name the file at fault."""
from typing import List

from mmdet.datasets import CocoDataset as MMDetCocoDataset

from ssl_det.registry import DATASETS


@DATASETS.register_module()
class CocoDataset(MMDetCocoDataset):
    """mmdet's ``CocoDataset``; an annotation file left with zero images (empty, or all
    filtered out by ``filter_cfg``) raises a ValueError naming it, where mmdet fails later
    with ``need at least one array to concatenate``.

    ssl_det's configs (``default_scope='ssl_det'``) build it for ``type='CocoDataset'``;
    from an mmdet config write ``type='ssl_det.CocoDataset'``.
    """

    def filter_data(self) -> List[dict]:
        data_list = super().filter_data()
        if not data_list:
            raise ValueError(
                f'{self.ann_file} has zero images (after filter_cfg={self.filter_cfg}); '
                'check the file and the split you made')
        return data_list
