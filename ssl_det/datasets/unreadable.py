"""Unreadable files in scraped data: skipped with a count in an unlabeled pool, an error
naming the file in labeled data.

Loading transforms raise :class:`UnreadableDataError` for a file that is missing, truncated
or cannot be decoded (ssl_det's ``LoadImageFromFile``, ``LoadPointsFromFile``). Datasets
built on :class:`SkipUnreadableMixin` (ssl_det's ``CocoDataset`` and ``PointCloudDataset``)
then either raise, with the file and the dataset named, or take the next sample of the same
dataset instead and record what they skipped in the returned sample's metainfo
(``skipped_unreadable``), from which ``DataCheckHook`` counts and logs every skipped file in
the main process (``train/skipped_unreadable``).

A sample with several views (``MultiBranch``: weak and strong) carries the record in every
view, each view its own copy (``set_metainfo`` deep-copies; a DataLoader worker pickles), so
the record also holds a token unique to the draw (``skipped_unreadable_token``): the hook
counts a draw's skips once however many views carry them, and two draws of the same bad
file twice.
"""
import uuid
from typing import List, Optional

from mmengine.fileio import get as get_bytes


class UnreadableDataError(ValueError):
    """A sample's file is missing, truncated or cannot be decoded.

    Args:
        path (str): The file.
        reason (str): What is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason if reason.startswith(str(path)) else f'{path}: {reason}')
        self.path = path
        self.reason = reason

    def __reduce__(self):  # keeps path and reason across DataLoader worker processes
        return type(self), (self.path, self.reason)


UNREADABLE_MODES = ('auto', 'error', 'skip')


def truncation(data: bytes) -> Optional[str]:
    """Why an encoded JPEG or PNG is incomplete (its end marker is missing), else None.

    OpenCV decodes a truncated JPEG without an error (the missing rows come out grey), so
    a scraped file cut short would otherwise train silently as a different image.
    """
    if data[:2] == b'\xff\xd8' and b'\xff\xd9' not in data[-64:]:
        return 'truncated JPEG (no end-of-image marker)'
    if data[:8] == b'\x89PNG\r\n\x1a\n' and b'IEND' not in data[-32:]:
        return 'truncated PNG (no IEND chunk)'
    return None


def read_image_bytes(path: str, backend_args: Optional[dict] = None) -> bytes:
    """The bytes of an image file, or :class:`UnreadableDataError` (missing, unreadable,
    empty or truncated)."""
    try:
        data = get_bytes(path, backend_args=backend_args)
    except FileNotFoundError:
        raise UnreadableDataError(path, 'file not found') from None
    except Exception as exc:  # permissions, a remote backend's errors, ...
        raise UnreadableDataError(path, f'cannot be read ({type(exc).__name__}: {exc})') \
            from exc
    if not data:
        raise UnreadableDataError(path, 'empty file')
    reason = truncation(data)
    if reason:
        raise UnreadableDataError(path, reason)
    return data


SKIPPED_KEY = 'skipped_unreadable'
TOKEN_KEY = 'skipped_unreadable_token'


def _mark_skipped(data, skipped: List[str]) -> None:
    """Record the skipped files in the metainfo of every data sample of ``data`` (every view
    of a multi-branch sample), with one token for this draw that all its views share."""
    # os.urandom, not the seeded generators: the draw's augmentation stays as it was.
    token = uuid.uuid4().hex
    samples = data.get('data_samples') if isinstance(data, dict) else None
    for sample in (samples.values() if isinstance(samples, dict) else [samples]):
        if sample is not None and hasattr(sample, 'set_metainfo'):
            sample.set_metainfo({SKIPPED_KEY: skipped, TOKEN_KEY: token})


class SkipUnreadableMixin:
    """``__getitem__`` that skips unreadable samples of an unlabeled pool.

    The dataset class sets ``self.unreadable`` (``'auto'``, ``'error'`` or ``'skip'``) and
    implements ``is_unlabeled()``; ``'auto'`` skips in an unlabeled dataset and raises in a
    labeled one. A skipped sample is replaced by the next readable one of the same dataset
    (index + 1, wrapping), so the batch keeps its size and its labeled/unlabeled make-up,
    and the choice is deterministic.
    """

    unreadable: str = 'auto'

    def is_unlabeled(self) -> bool:
        raise NotImplementedError

    def skips_unreadable(self) -> bool:
        if self.unreadable not in UNREADABLE_MODES:
            raise ValueError(f'unreadable must be one of {UNREADABLE_MODES}, got '
                             f'{self.unreadable!r}')
        return self.unreadable == 'skip' or (self.unreadable == 'auto' and self.is_unlabeled())

    def __getitem__(self, idx: int):
        if not self.skips_unreadable():
            try:
                return super().__getitem__(idx)
            except UnreadableDataError as exc:
                raise type(exc)(
                    exc.path, f'{exc.reason}. It is listed in the labeled data '
                    f'{getattr(self, "ann_file", "")}, which must be readable: fix or remove '
                    'it, or set unreadable="skip" on this dataset to skip such files') from exc
        skipped: List[str] = []
        for _ in range(len(self)):
            try:
                data = super().__getitem__(idx)
            except UnreadableDataError as exc:
                skipped.append(str(exc))
                idx = (int(idx) + 1) % len(self)
                continue
            if skipped:
                _mark_skipped(data, skipped)
            return data
        raise RuntimeError(f'not one file of {getattr(self, "ann_file", "the dataset")} could '
                           f'be read (e.g. {skipped[0]})')
