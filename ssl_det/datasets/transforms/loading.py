"""``LoadImageFromFile`` that tells a missing, truncated or undecodable image apart."""
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile

from ssl_det.registry import TRANSFORMS
from ..unreadable import UnreadableDataError, read_image_bytes


@TRANSFORMS.register_module()
class LoadImageFromFile(MMCVLoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` (same arguments and results) that raises
    :class:`~ssl_det.datasets.unreadable.UnreadableDataError` naming the file and the
    reason for a file that is missing, empty, truncated (JPEG/PNG end marker missing, which
    OpenCV would decode as a partly grey image without a word) or undecodable; mmcv raises
    a bare ``AssertionError: failed to load image`` for the last and accepts the truncated
    ones. ssl_det's datasets skip such files in an unlabeled pool and name them in an error
    in labeled data. With ``default_scope='ssl_det'`` a config's ``type='LoadImageFromFile'``
    builds this transform. ``ignore_empty=True`` still returns None instead.
    """

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            if self.file_client_args is not None:
                raise UnreadableDataError(
                    filename, 'file_client_args is not supported by ssl_det\'s '
                    'LoadImageFromFile; use backend_args')
            data = read_image_bytes(filename, self.backend_args)
            try:
                img = mmcv.imfrombytes(data, flag=self.color_type,
                                       backend=self.imdecode_backend)
            except Exception as exc:
                raise UnreadableDataError(filename, f'cannot be decoded ({exc})') from exc
            if img is None:
                raise UnreadableDataError(filename, 'cannot be decoded as an image')
        except UnreadableDataError:
            if self.ignore_empty:
                return None
            raise
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results
