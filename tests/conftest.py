"""Shared fixtures: tiny generated demo data."""
import os
import os.path as osp
import sys

import pytest

TESTS = osp.dirname(osp.abspath(__file__))
sys.path[:0] = [osp.dirname(TESTS), TESTS]
os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(scope='session')
def tiny_demo(tmp_path_factory):
    """A small demo data set (24 train, 8 val images) with the demo's 10% labeled split."""
    from ssl_det.datasets.coco_split import split_coco
    from ssl_det.datasets.demo_data import make_demo_data
    root = str(tmp_path_factory.mktemp('demo'))
    files = make_demo_data(root, num_train=24, num_val=8, seed=3)
    split_coco(files['train'], [10], folds=1, out_dir=osp.join(root, 'semi_anns'))
    return root


@pytest.fixture(autouse=True)
def ssl_det_scope():
    """Build registered modules as ssl_det's configs do (``default_scope='ssl_det'``), even
    after a test's Runner made another scope current.

    With ``SSL_DET_OPS_ONLY=1`` (a host with the kernels but no OpenMMLab, e.g. the GPU
    check) there is nothing to register."""
    if os.environ.get('SSL_DET_OPS_ONLY', '0') == '1':
        yield
        return
    import ssl_det  # noqa: F401
    from mmengine.registry import DefaultScope, init_default_scope
    if DefaultScope.get_current_instance() is None:
        init_default_scope('ssl_det')
    with DefaultScope.overwrite_default_scope('ssl_det'):
        yield
