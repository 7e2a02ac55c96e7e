"""DataCheckHook on point-cloud datasets: a missing point file stops the run, naming it.
(Class lists that differ between concatenated datasets already fail in mmengine's
ConcatDataset.)"""
import os

import pytest

from ssl_det.datasets.point_cloud_dataset import PointCloudDataset
from ssl_det.engine.hooks.data_check_hook import check_dataset

from test_datasets.test_point_cloud_dataset import write_info  # noqa: E402


def test_point_cloud_split_passes_and_counts_frames(tmp_path):
    ds = PointCloudDataset(write_info(tmp_path))
    assert check_dataset(ds, 'train') == 2


def test_missing_point_file_is_named(tmp_path):
    info = write_info(tmp_path)
    os.remove(tmp_path / 'points' / 'b.bin')
    with pytest.raises(FileNotFoundError, match=r'b\.bin'):
        check_dataset(PointCloudDataset(info), 'train')
