"""Multi-node launch on one machine: two "nodes" (two torchrun agents, ``--nnodes 2``, one
process each) train the 3D teacher-student config for 3 iterations over gloo, and the two
ranks end with the same teacher, BN statistics included; ``tools/slurm_train.sh`` does the
same through a stand-in ``srun`` (two tasks, ``--launcher slurm``, CPU)."""
import glob
import importlib.util
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from demo_helpers import ROOT, as_cli, semi_3d_overrides
from ssl_det.datasets.demo_data_3d import make_demo_data_3d
from ssl_det.utils.launch import first_slurm_host, slurm_to_torch_env

CFG = osp.join(ROOT, 'configs/point_cloud/hssda_pillar-center_demo3d_semi-10pct.py')
TRAIN = osp.join(ROOT, 'tools', 'train.py')
TESTS = osp.dirname(osp.dirname(osp.abspath(__file__)))
TIMEOUT = 600

needs_torchrun = pytest.mark.skipif(
    not torch.distributed.is_available()
    or importlib.util.find_spec('torch.distributed.run') is None,
    reason='torch.distributed.run (torchrun) is not available in this torch build')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('multinode3d'))
    make_demo_data_3d(root, num_train=20, num_val=3, seed=1, verbose=False)
    return root + '/'


def _config(tmp_path):
    """The real config plus the test's TeacherDumpHook (appended, so the config's hooks keep
    their indices)."""
    path = tmp_path / 'multi_node_cfg.py'
    path.write_text(textwrap.dedent(f"""\
        _base_ = [{CFG!r}]
        custom_imports = dict(imports=['multi_node_helpers'], allow_failed_imports=False)
        custom_hooks = _base_.custom_hooks + [dict(type='TeacherDumpHook')]
        """))
    return str(path)


def _overrides(root, iters=3):
    # the teacher is copied from the student after iteration 0, then EMA-updated
    return semi_3d_overrides(root, iters, **{
        'train_cfg.val_interval': 1000, 'train_dataloader.batch_size': 2,
        'train_dataloader.sampler.batch_size': 2, 'custom_hooks.3.interval': 1000})


def _env(**extra):
    path = os.pathsep.join([TESTS, ROOT] + ([os.environ['PYTHONPATH']]
                                            if os.environ.get('PYTHONPATH') else []))
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=path, **extra)


def _wait_all(procs, timeout=TIMEOUT):
    """Wait for every process (a session each); on timeout kill them all and fail."""
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            outputs.append(out)
    except subprocess.TimeoutExpired:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            proc.communicate()
        pytest.fail(f'multi-node training did not finish within {timeout} s')
    return outputs


def _assert_same_teacher(work_dir, outputs, procs):
    for rank, (proc, out) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f'process {rank} exited {proc.returncode}:\n{out[-4000:]}'
    log = '\n'.join(open(p).read() for p in glob.glob(osp.join(work_dir, '*', '*.log')))
    assert 'Distributed training: True' in log and 'GPU number: 2' in log  # world size 2
    teachers = [torch.load(osp.join(work_dir, f'teacher_rank{r}.pt'), weights_only=True)
                for r in range(2)]
    students = [torch.load(osp.join(work_dir, f'student_rank{r}.pt'), weights_only=True)
                for r in range(2)]
    assert teachers[0].keys() == teachers[1].keys()
    bn_stats = [k for k in teachers[0] if k.endswith(('running_mean', 'running_var'))]
    assert bn_stats, 'the model has no BN statistics: the buffer check would test nothing'
    # The students' BN statistics differ (each rank normalised its own batches,
    # broadcast_buffers=False), so equal teachers are the buffer sync's doing.
    assert any(not torch.equal(students[0][k], students[1][k]) for k in bn_stats)
    differ = [k for k in teachers[0] if not torch.equal(teachers[0][k], teachers[1][k])]
    assert not differ, f'the ranks\' teachers differ in {len(differ)} tensors, e.g. {differ[:5]}'
    # and the EMA ran: the teacher is not the initial copy of the student
    assert any(not torch.equal(teachers[0][k], students[0][k]) for k in teachers[0]
               if teachers[0][k].is_floating_point())
    assert all(torch.isfinite(v).all() for v in teachers[0].values() if v.is_floating_point())


@needs_torchrun
@pytest.mark.slow
def test_two_nodes_torchrun_agree_on_teacher(scenes, tmp_path):
    port = _free_port()
    cfg = _config(tmp_path)
    work_dir = str(tmp_path / 'work')
    opts = as_cli(_overrides(scenes))
    procs = [
        subprocess.Popen(
            [sys.executable, '-m', 'torch.distributed.run', '--nnodes', '2',
             '--nproc_per_node', '1', '--node_rank', str(node), '--master_addr', '127.0.0.1',
             '--master_port', str(port), TRAIN, cfg, '--launcher', 'pytorch', '--work-dir',
             work_dir, '--cfg-options', *opts],
            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        for node in range(2)]
    outputs = _wait_all(procs)
    _assert_same_teacher(work_dir, outputs, procs)


FAKE_SRUN = '''\
#!{python}
"""Stand-in for srun: runs the command as --ntasks tasks on this machine, with the SLURM_*
variables a real step sets (one "node" per task)."""
import os, subprocess, sys
args, ntasks, i = sys.argv[1:], 1, 0
while i < len(args) and args[i].startswith('-'):
    if args[i].startswith('--ntasks='):
        ntasks = int(args[i].split('=', 1)[1])
    i += 2 if args[i] in ('-p', '-J', '-N', '-n') else 1
procs = [subprocess.Popen(args[i:], env=dict(
    os.environ, SLURM_PROCID=str(r), SLURM_NTASKS=str(ntasks), SLURM_LOCALID='0',
    SLURM_NODEID=str(r), SLURM_NODELIST='localhost', SLURM_STEP_NODELIST='localhost'))
    for r in range(ntasks)]
sys.exit(max(p.wait() for p in procs))
'''


@needs_torchrun
@pytest.mark.slow
def test_slurm_train_sh_two_tasks_on_cpu(scenes, tmp_path):
    """tools/slurm_train.sh -> srun (stand-in) -> tools/train.py --launcher slurm: on CPU
    torch, ssl_det derives RANK/WORLD_SIZE/MASTER_ADDR from SLURM_* and sets up gloo."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(FAKE_SRUN.format(python=sys.executable))
    srun.chmod(0o755)
    work_dir = str(tmp_path / 'work')
    env = _env(PATH=f'{bin_dir}{os.pathsep}{os.environ.get("PATH", "")}', GPUS='2',
               GPUS_PER_NODE='1', CPUS_PER_TASK='1', GRES='', PORT=str(_free_port()),
               PYTHON=sys.executable)
    env.pop('MASTER_ADDR', None)
    env.pop('MASTER_PORT', None)
    proc = subprocess.Popen(
        ['bash', osp.join(ROOT, 'tools', 'slurm_train.sh'), 'debug', 'ssl_det_test',
         _config(tmp_path), work_dir, '--cfg-options', *as_cli(_overrides(scenes))],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    outputs = _wait_all([proc])
    assert proc.returncode == 0, outputs[0][-6000:]
    assert '--launcher=slurm' in outputs[0]  # set -x shows the srun line
    _assert_same_teacher(work_dir, outputs * 2, [proc, proc])


def test_slurm_to_torch_env(monkeypatch):
    monkeypatch.setattr('ssl_det.utils.launch._scontrol_hosts', lambda nodelist: None)
    env = {'SLURM_PROCID': '5', 'SLURM_NTASKS': '8', 'SLURM_LOCALID': '1',
           'SLURM_NODELIST': 'gpu[07-09],cpu3', 'LOCAL_RANK': '0'}
    assert slurm_to_torch_env(env) == {
        'RANK': '5', 'WORLD_SIZE': '8', 'LOCAL_RANK': '1', 'MASTER_ADDR': 'gpu07',
        'MASTER_PORT': '29500'}
    # a step's own node list wins; MASTER_ADDR / MASTER_PORT already set are kept
    env.update(SLURM_STEP_NODELIST='cpu3', MASTER_PORT='1234')
    assert slurm_to_torch_env(env)['MASTER_ADDR'] == 'cpu3'
    assert slurm_to_torch_env(env)['MASTER_PORT'] == '1234'
    env['MASTER_ADDR'] = '10.0.0.1'
    assert slurm_to_torch_env(env)['MASTER_ADDR'] == '10.0.0.1'
    with pytest.raises(KeyError, match='SLURM_PROCID'):
        slurm_to_torch_env({'SLURM_NTASKS': '2'})


@pytest.mark.parametrize('nodelist, host', [
    ('node1', 'node1'), ('node1,node2', 'node1'), ('node[001-004],gpu7', 'node001'),
    ('a[3,5-7]', 'a3'), ('rack[1-2]-n[08-09]', 'rack1-n08'), ('10.1.2.3', '10.1.2.3')])
def test_first_slurm_host_without_scontrol(monkeypatch, nodelist, host):
    monkeypatch.setattr('ssl_det.utils.launch._scontrol_hosts', lambda nodelist: None)
    assert first_slurm_host(nodelist) == host
