"""benchmarks/gpu_check.sh, the GPU check of issue #20, kept ready without a GPU: its CPU dry
run (``--device cpu --quick``) runs every stage and writes the files the GPU run writes; and
benchmarks/gpu_mmcv.py, which compiles mmcv on the GPU host with a subset of its CUDA
kernels, links the left-out kernels' launchers to a stub that raises."""
import json
import math
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import gpu_mmcv  # noqa: E402

STAGES = {'test_ops', 'ops_benchmark', 'soft_teacher_step', 'soft_teacher_step_amp',
          'pillar_step'}


def finite_positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_cpu_dry_run_writes_every_result(tmp_path):
    scratch = tmp_path / 'scratch'  # the stages' temporary files, removed when they end
    scratch.mkdir()
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, OMP_NUM_THREADS='1',
               THREADS='1', TMPDIR=str(scratch))
    done = subprocess.run(['bash', osp.join(ROOT, 'benchmarks', 'gpu_check.sh'), '--device',
                           'cpu', '--quick'], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]

    summary = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert summary['device'] == 'cpu' and summary['device_name'].startswith('cpu (')
    assert summary['quick'] and summary['ok']
    assert set(summary['stages']) == STAGES
    assert all(s['status'] == 'ok' for s in summary['stages'].values()), summary['stages']
    assert summary['versions']['mmdet'] == '3.3.0'
    assert set(summary['files']) == {'gpu_ops.json', 'gpu_soft_teacher_step.json',
                                     'gpu_soft_teacher_step_amp.json', 'gpu_pillar_step.json'}
    assert (tmp_path / 'gpu_check.log').stat().st_size > 0
    assert not [p.name for p in scratch.iterdir() if p.name.startswith('pillar_step_')]

    for name, amp in (('gpu_soft_teacher_step.json', False),
                      ('gpu_soft_teacher_step_amp.json', True)):
        result = json.loads((tmp_path / name).read_text())
        assert result['failed'] == {}, (name, result['failed'])
        for key in ('ours_s', 'mmdet_s', 'floor_s', 'ratio', 'ours_over_floor'):
            assert finite_positive(result[key]), (name, key, result[key])
        assert result['ratio'] == pytest.approx(result['ours_s'] / result['mmdet_s'])
        assert result['ours_over_floor'] == pytest.approx(result['ours_s'] / result['floor_s'])
        floor = result['details']['floor']
        # the floor's parts: the teacher's forward, the student's (medians, so roughly)
        assert floor['teacher_s'] + floor['student_s'] == pytest.approx(floor['median_s'],
                                                                        rel=0.25)
        assert result['device_name'] == result['device']
        assert result['device_name'].startswith('cpu (')
        setting = result['setting']
        # the dry run goes through the GPU setting's code paths: ResNet-50, a resize scale
        assert setting['depth'] == 50 and setting['scale'] == [96, 64]
        assert setting['input_shape'] == [64, 64]  # 128-px squares into 96 x 64
        assert (setting['labeled'], setting['unlabeled']) == (1, 1)
        assert setting['amp'] is amp
        assert setting['amp_dtype'] == ('bfloat16' if amp else None)

    ops = json.loads((tmp_path / 'gpu_ops.json').read_text())
    assert ops and all(finite_positive(row['ours_ms']) and row['device'].startswith('cpu')
                       for row in ops)
    pillar = json.loads((tmp_path / 'gpu_pillar_step.json').read_text())
    assert pillar['device_name'].startswith('cpu')
    semi = pillar['semi']
    assert pillar['semi_over_sup'] == semi['semi_over_sup']
    for variant in (semi, semi['before'], semi['joint_batch']):
        assert finite_positive(variant['semi_over_sup']), variant
        assert finite_positive(variant['semi_over_sup_paired']), variant


def test_bad_arguments_are_refused(tmp_path):
    script = osp.join(ROOT, 'benchmarks', 'gpu_check.sh')
    env = dict(os.environ, OUT=str(tmp_path))
    for args in (['--device', 'tpu'], ['--fast']):
        done = subprocess.run(['bash', script, *args], env=env, capture_output=True, text=True)
        assert done.returncode == 2, (args, done.stdout, done.stderr)


# ------------------------------------------------------------------ gpu_mmcv.py
def fake_mmcv_tree(root, cuda_files):
    cuda = root / gpu_mmcv.CUDA_DIR
    cuda.mkdir(parents=True)
    (cuda / 'cudabind.cpp').write_text('')
    for name in cuda_files:
        (cuda / name).write_text('')
    return str(root)


def test_leave_out_keeps_the_chosen_kernels(tmp_path):
    src = fake_mmcv_tree(tmp_path, ['nms_cuda.cu', 'roi_align_cuda.cu', 'convex_iou.cu',
                                    'filtered_lrelu.cu'])
    moved = gpu_mmcv.leave_out(src, ['nms', 'convex_iou'])
    assert sorted(osp.basename(m) for m in moved) == ['filtered_lrelu.cu', 'roi_align_cuda.cu']
    assert sorted(osp.basename(f) for f in gpu_mmcv.cuda_sources(src)) == [
        'convex_iou.cu', 'nms_cuda.cu']
    assert gpu_mmcv.count_sources(src) == dict(cpp=0, cpu=0, cu=2, cuda_cpp=1)
    with pytest.raises(SystemExit, match='no CUDA kernel file for op .nmss.*nms'):
        gpu_mmcv.leave_out(src, ['nmss'])


def test_function_names_and_ldd_output():
    name = gpu_mmcv.function_name
    assert name('NMSCUDAKernelLauncher(at::Tensor, at::Tensor, float, int)') == \
        'NMSCUDAKernelLauncher'
    assert name('std::vector<at::Tensor, std::allocator<at::Tensor> > '
                'GetIndicePairsForwardCUDAKernelLauncher<2u>(at::Tensor, long)') == \
        'GetIndicePairsForwardCUDAKernelLauncher'
    # members, namespaced functions, anonymous namespaces and data are never stubbed
    for other in ('at::Tensor::Tensor()', 'c10::detail::f<int>(int)',
                  'void (anonymous namespace)::g()', 'some_table'):
        assert name(other) is None, other
    text = textwrap.dedent('''\
        \tlibc10.so => /t/lib/libc10.so (0x1)
        \tlibcudart.so.13 => not found
        undefined symbol: PyExc_RuntimeError\t(/x/_ext.so)
        undefined symbol: _Z21NMSCUDAKernelLauncherN2at6TensorES0_fi\t(/x/_ext.so)
        undefined symbol: _PyThreadState_UncheckedGet\t(/x/_ext.so)
        undefined symbol: _ZN3c104cuda9GetDeviceEv\t(/t/lib/libtorch_cuda.so)
        ''')
    # only what the extension itself lacks, never Python's C API
    assert gpu_mmcv.parse_ldd(text, '/x/_ext.so') == (
        ['_Z21NMSCUDAKernelLauncherN2at6TensorES0_fi'], ['libcudart.so.13'])
    assert gpu_mmcv.cache_name('2.11.0+cu130', '9.0', gpu_mmcv.KEEP).startswith(
        'mmcv2.1.0_ext-torch2.11.0_cu130-sm90-7ops-')


TOY_EXT = r'''
#include <Python.h>
#include <stdexcept>
#include <vector>
// like cudabind.cpp: calls a launcher defined only in a .cu file that is left out
int ToyForwardCUDAKernelLauncher(int n, const std::vector<float>& v);
static PyObject* call(PyObject*, PyObject*) {
  try {  // pybind11 turns C++ exceptions into Python ones; so does this
    return PyLong_FromLong(ToyForwardCUDAKernelLauncher(1, {}));
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}
static PyObject* kept(PyObject*, PyObject*) { return PyLong_FromLong(7); }
static PyMethodDef methods[] = {{"call", call, METH_NOARGS, ""},
                                {"kept", kept, METH_NOARGS, ""}, {nullptr, nullptr, 0, nullptr}};
static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ext", nullptr, -1, methods};
PyMODINIT_FUNC PyInit__ext() { return PyModule_Create(&module); }
'''


@pytest.mark.skipif(not all(shutil.which(t) for t in ('c++', 'ldd', 'c++filt')),
                    reason='needs a C++ compiler, ldd and c++filt')
def test_left_out_launchers_link_to_a_stub_that_raises(tmp_path):
    """The link step on a toy extension laid out like mmcv (mmcv/_ext): the launcher of a
    left-out file stays undefined after the first link, ldd -r finds it, the left-out file
    vouches for it, and after the second link the module imports and the call raises."""
    src = tmp_path / 'toy'
    (src / 'mmcv').mkdir(parents=True)
    (src / 'mmcv' / '__init__.py').write_text('')
    (src / 'ext.cpp').write_text(TOY_EXT)
    (src / 'setup.py').write_text(
        "from setuptools import Extension, setup\n"
        "setup(name='toy', ext_modules=[Extension('mmcv._ext', ['ext.cpp'], language='c++')])\n")
    left_out = tmp_path / 'toy_cuda.cu'
    left_out.write_text('int ToyForwardCUDAKernelLauncher(int n, const std::vector<float>& v)'
                        ' { return n; }\n')
    unrelated = tmp_path / 'other_cuda.cu'
    unrelated.write_text('void OtherLauncher(int n) {}\n')
    env = dict(os.environ)
    log = str(tmp_path / 'build.log')

    lib = gpu_mmcv.build_ext(str(src), env, log)
    missing, not_found = gpu_mmcv.undefined_symbols(lib, [])
    assert not_found == [] and len(missing) == 1
    assert 'ToyForwardCUDAKernelLauncher' in missing[0]
    assert gpu_mmcv.check_left_out(missing, [str(left_out)]) == []
    # a symbol that no left-out file defines is not stubbed
    assert len(gpu_mmcv.check_left_out(missing, [str(unrelated)])) == 1

    lib = gpu_mmcv.link_stubs(str(src), lib, missing, env, log, str(tmp_path / 'stub'))
    assert gpu_mmcv.undefined_symbols(lib, [])[0] == []
    check = subprocess.run(
        [sys.executable, '-c', textwrap.dedent('''\
            from mmcv import _ext
            assert _ext.kept() == 7
            try:
                _ext.call()
            except RuntimeError as exc:
                print(exc)
            ''')], env=dict(env, PYTHONPATH=str(src)), capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert 'left out of this build' in check.stdout
