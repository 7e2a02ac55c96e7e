"""A log processor whose text lines stay readable with many classes.

Teacher-student runs log per-class pseudo-label statistics (``pseudo/num_confident_3``,
``pseudo/thr_high_3``, ...): 6 keys per class, 1.3k characters per line at 10 classes, and
unreadable at COCO's 80. :class:`SemiLogProcessor` keeps them out of the text log while the
scalar backends (``vis_data/scalars.json``, TensorBoard) still get every key, and prints a
per-class table every ``table_interval`` iterations instead.
"""
import re
from collections import defaultdict
from typing import Dict, Optional, Sequence, Tuple

from mmengine.logging import print_log
from mmengine.runner import LogProcessor

from ssl_det.registry import LOG_PROCESSORS

_PER_CLASS = re.compile(r'^(?P<prefix>.+/)(?P<stat>[a-z_]+?)_(?P<cls>\d+)$')


@LOG_PROCESSORS.register_module()
class SemiLogProcessor(LogProcessor):
    """mmengine's ``LogProcessor`` with per-class keys kept out of the text log.

    Args:
        text_exclude (Sequence[str]): Key prefixes left out of the text line (they still go
            to the scalar backends). Defaults to ``('pseudo/',)``: the per-class
            pseudo-label statistics; totals such as ``pseudo_num_confident`` stay.
        table_interval (int): Every this many training iterations (at a logged iteration),
            print the excluded per-class keys as a table, one row per class, named by the
            dataset's ``classes``. 0 turns the table off. Defaults to 500.
        **kwargs: ``LogProcessor``'s arguments (``window_size``, ``by_epoch``, ...).
    """

    def __init__(self, text_exclude: Sequence[str] = ('pseudo/',), table_interval: int = 500,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.text_exclude = tuple(text_exclude)
        self.table_interval = table_interval
        self._hiding = False
        self._last_table = -1

    def _excluded(self, key: str) -> bool:
        name = key.split('/', 1)[1] if key.startswith(('train/', 'val/', 'test/')) else key
        return name.startswith(self.text_exclude)

    def _collect_scalars(self, custom_cfg, runner, mode, reserve_prefix=False):
        tag = super()._collect_scalars(custom_cfg, runner, mode, reserve_prefix)
        if self._hiding:
            tag = {k: v for k, v in tag.items() if not self._excluded(k)}
        return tag

    def get_log_after_iter(self, runner, batch_idx: int, mode: str) -> Tuple[dict, str]:
        self._hiding = True
        try:
            tag, log_str = super().get_log_after_iter(runner, batch_idx, mode)
        finally:
            self._hiding = False
        # the scalar backends get every key, the excluded ones included
        parsed = self._parse_windows_size(runner, batch_idx, self.custom_cfg)
        full = self._collect_scalars(parsed, runner, mode, self.log_with_hierarchy)
        for key, value in full.items():
            tag.setdefault(key, value)
        if mode == 'train' and self.table_interval > 0:
            step = runner.iter + 1
            if step // self.table_interval > self._last_table // self.table_interval:
                table = self.class_table(full, self._classes(runner))
                if table:
                    print_log(f'per-class statistics at iteration {step}:\n{table}',
                              logger='current')
                self._last_table = step
        return tag, log_str

    @staticmethod
    def _classes(runner) -> Optional[Sequence[str]]:
        try:
            return runner.train_dataloader.dataset.metainfo.get('classes')
        except Exception:  # no train dataloader built (test mode) or no metainfo
            return None

    def class_table(self, scalars: Dict[str, float],
                    classes: Optional[Sequence[str]] = None) -> str:
        """The excluded ``<prefix><stat>_<class index>`` keys as a markdown table."""
        rows: Dict[int, Dict[str, float]] = defaultdict(dict)
        stats = []
        for key, value in scalars.items():
            match = _PER_CLASS.match(key.split('/', 1)[1] if key.startswith('train/') else key)
            if match is None or not self._excluded(key):
                continue
            stat = match['stat']
            if stat not in stats:
                stats.append(stat)
            rows[int(match['cls'])][stat] = value
        if not rows:
            return ''
        lines = ['| class | ' + ' | '.join(stats) + ' |',
                 '| --- |' + ' --- |' * len(stats)]
        for index in sorted(rows):
            name = classes[index] if classes is not None and index < len(classes) else index
            cells = [self._fmt(rows[index].get(stat)) for stat in stats]
            lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
        return '\n'.join(lines)

    def _fmt(self, value) -> str:
        if value is None:
            return ''
        value = float(value)
        return f'{value:.0f}' if value.is_integer() else f'{value:.{self.num_digits}f}'
