"""mmcv 2.1.0's compiled ops, built from its source release on a GPU host with a subset of
its CUDA kernels (for ``benchmarks/gpu_check.sh``; the host has CUDA torch and nvcc but no
OpenMMLab, and no network).

With CUDA, mmcv 2.1.0 compiles 136 files: 57 op wrappers (``csrc/pytorch/*.cpp``), 20 CPU
kernels, 58 CUDA files and ``cudabind.cpp``, which registers every CUDA kernel. That is more
than the check's time allows. Python needs every wrapper (``mmcv.ops`` checks that each
op's functions exist when it is imported), but only the CUDA kernels that the check runs
need compiling. So every ``.cpp`` file is compiled, and of the ``.cu`` files only those of
``--ops`` (default: ``KEEP``). ``cudabind.cpp`` still calls the launchers of the left-out
kernels: the linker leaves them undefined (a shared library may), ``ldd -r`` lists them, and
the library is linked again with each of them defined (``--defsym``) as one function that
raises ``RuntimeError: ... left out of this build``. An op whose kernel was left out fails
when it is called on a CUDA tensor, never at import. An undefined symbol that does not
belong to a left-out ``.cu`` file stops the build instead of being stubbed.

The built library can be saved (``--save DIR``, stripped of debug information) under a name
that says mmcv's and torch's versions, the GPU architecture and the kernel set; given that
file back (``--cache DIR``), a later run skips the compilation.

    python benchmarks/gpu_mmcv.py --sdist .whl/mmcv-2.1.0.tar.gz --dest /tmp/mmcv \
        [--ops nms roi_align ... | --ops all] [--jobs 16] [--arch 9.0] \
        [--build-site DIR] [--cache DIR] [--save DIR] [--summary FILE]

The last line printed is the folder to put on ``PYTHONPATH`` (the built source tree).
"""
import argparse
import glob
import hashlib
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tarfile
import time

# The kernels gpu_check runs: mmdet's detectors (nms, roi_align; focal_loss for the one-stage
# heads), ssl_det's 3D pillars (voxelization) and the peers of benchmarks/ops.py and
# tests/test_ops (bbox_overlaps, box_iou_rotated, nms_rotated).
KEEP = ('bbox_overlaps', 'box_iou_rotated', 'focal_loss', 'nms', 'nms_rotated', 'roi_align',
        'voxelization')
CUDA_DIR = osp.join('mmcv', 'ops', 'csrc', 'pytorch', 'cuda')
STUB = 'ssl_det_mmcv_kernel_left_out'
STUB_SOURCE = f'''// Every launcher of a CUDA kernel left out of this mmcv build is an alias of this
// function (gpu_mmcv.py links them with --defsym): calling one raises a C++ exception, which
// pybind11 turns into a Python RuntimeError. It never returns, whatever the caller expected.
#include <stdexcept>
extern "C" [[noreturn]] void {STUB}() {{
  throw std::runtime_error(
      "mmcv was built with a subset of its CUDA kernels (benchmarks/gpu_mmcv.py) and this "
      "op's kernel was left out of this build; rebuild with --ops all");
}}
'''


def log(msg):
    print(f'[gpu_mmcv] {msg}', flush=True)


def extract(sdist, dest):
    """Unpacks the source release into ``dest`` and returns its top folder."""
    os.makedirs(dest, exist_ok=True)
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split('/')[0]
        if hasattr(tarfile, 'data_filter'):  # Python >= 3.11.4: no links out of dest
            tar.extractall(dest, filter='data')
        else:
            tar.extractall(dest)
    return osp.join(dest, top)


def cuda_sources(src):
    return sorted(glob.glob(osp.join(src, CUDA_DIR, '*.cu')))


def kernel_file(src, op):
    """The CUDA file of an op (``nms`` -> ``nms_cuda.cu``; ``convex_iou`` -> ``convex_iou.cu``)."""
    for name in (f'{op}_cuda.cu', f'{op}.cu'):
        if osp.exists(osp.join(src, CUDA_DIR, name)):
            return osp.join(src, CUDA_DIR, name)
    known = sorted(re.sub(r'(_cuda)?\.cu$', '', osp.basename(f)) for f in cuda_sources(src))
    raise SystemExit(f'no CUDA kernel file for op {op!r}; mmcv has: {", ".join(known)}')


def leave_out(src, ops):
    """Moves the ``.cu`` files not needed by ``ops`` out of the build (setup.py globs the
    folder). Returns the moved files' new paths."""
    keep = {kernel_file(src, op) for op in ops}
    away = osp.join(src, 'left_out_cuda')
    os.makedirs(away, exist_ok=True)
    moved = []
    for path in cuda_sources(src):
        if path not in keep:
            moved.append(shutil.move(path, osp.join(away, osp.basename(path))))
    return moved


def count_sources(src):
    """Files setup.py compiles with CUDA (the same globs as its CUDA branch)."""
    base = osp.join(src, 'mmcv', 'ops', 'csrc', 'pytorch')
    return dict(cpp=len(glob.glob(osp.join(base, '*.cpp'))),
                cpu=len(glob.glob(osp.join(base, 'cpu', '*.cpp'))),
                cu=len(glob.glob(osp.join(base, 'cuda', '*.cu'))),
                cuda_cpp=len(glob.glob(osp.join(base, 'cuda', '*.cpp'))))


def build_ext(src, env, log_file):
    """``setup.py build_ext --inplace`` in ``src``; returns the built library's path."""
    with open(log_file, 'a') as f:
        done = subprocess.run([sys.executable, 'setup.py', 'build_ext', '--inplace'], cwd=src,
                              env=env, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        with open(log_file) as f:
            tail = f.read()[-6000:]
        raise SystemExit(f'{tail}\nbuild failed (full log: {log_file})')
    libs = glob.glob(osp.join(src, 'mmcv', '_ext*.so'))
    if len(libs) != 1:
        raise SystemExit(f'expected one mmcv/_ext*.so in {src}, found {libs}')
    return libs[0]


def parse_ldd(text, lib):
    """``ldd -r`` output -> (symbols left undefined in ``lib`` itself, other than Python's,
    libraries not found)."""
    missing = [sym for sym, where in re.findall(r'undefined symbol: (\S+)\s+\((\S+)\)', text)
               if osp.basename(where) == osp.basename(lib)]
    not_found = re.findall(r'^\s*(\S+) => not found', text, flags=re.M)
    # the interpreter defines Python's C API when the module is imported
    missing = sorted({s for s in missing if not re.match(r'_?Py', s)})
    return missing, not_found


def undefined_symbols(lib, lib_path):
    """What the dynamic loader could not resolve in ``lib`` (``ldd -r``), with ``lib_path``
    searched for its libraries (torch's and CUDA's, which the extension does not record)."""
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(
        [p for p in lib_path if p] + [os.environ.get('LD_LIBRARY_PATH', '')]))
    done = subprocess.run(['ldd', '-r', lib], env=env, capture_output=True, text=True)
    return parse_ldd(done.stdout + done.stderr, lib)


def function_name(demangled):
    """The name of a demangled free function:
    ``std::vector<at::Tensor> Foo<2u>(at::Tensor, long)`` -> ``Foo``; None for anything else
    (a member, a namespaced function, data): mmcv's kernel launchers are free functions."""
    if '(' not in demangled or '(anonymous namespace)' in demangled:
        return None
    head = demangled.split('(', 1)[0].rstrip()
    while head.endswith('>'):  # template arguments of the function itself
        depth, i = 0, len(head) - 1
        for i in range(len(head) - 1, -1, -1):
            depth += {'>': 1, '<': -1}.get(head[i], 0)
            if depth == 0:
                break
        head = head[:i].rstrip()
    match = re.search(r'([\w:]+)$', head)
    return match.group(1) if match and '::' not in match.group(1) else None


def demangle(symbols):
    done = subprocess.run(['c++filt'], input='\n'.join(symbols), capture_output=True,
                          text=True, check=True)
    return done.stdout.splitlines()


def check_left_out(symbols, left_out_files):
    """Each undefined symbol must be a function that a left-out file defines; returns the
    ones that are not (empty: all of them may be stubbed)."""
    texts = [open(f).read() for f in left_out_files]
    strangers = []
    for symbol, name in zip(symbols, demangle(symbols)):
        func = function_name(name)
        pattern = re.compile(r'\b' + re.escape(func) + r'\s*(<[^;{]*?>)?\s*\(') if func else None
        if pattern is None or not any(pattern.search(t) for t in texts):
            strangers.append(f'{symbol} ({name})')
    return strangers


def link_stubs(src, lib, symbols, env, log_file, workdir):
    """Links the library again with every symbol in ``symbols`` defined as the stub."""
    os.makedirs(workdir, exist_ok=True)
    stub_cpp, stub_o = osp.join(workdir, 'left_out.cpp'), osp.join(workdir, 'left_out.o')
    rsp = osp.join(workdir, 'left_out.rsp')
    with open(stub_cpp, 'w') as f:
        f.write(STUB_SOURCE)
    subprocess.run([os.environ.get('CXX', 'c++'), '-fPIC', '-O2', '-c', stub_cpp, '-o', stub_o],
                   check=True)
    with open(rsp, 'w') as f:  # a gcc response file: one option per line
        f.write(''.join(f'-Wl,--defsym,{s}={STUB}\n' for s in symbols))
    # build_ext links only when the library is missing (the objects are up to date)
    for old in [lib] + glob.glob(osp.join(src, 'build', 'lib*', '**', osp.basename(lib)),
                                 recursive=True):
        os.remove(old)
    flags = f'{env.get("LDFLAGS", "")} {stub_o} @{rsp}'.strip()
    return build_ext(src, dict(env, LDFLAGS=flags), log_file)


def cache_name(torch_version, arch, ops):
    """File name of a saved library: versions, architecture and a digest of the kernel set
    (letters, digits, '.', '_' and '-' only)."""
    digest = hashlib.sha1(' '.join(sorted(ops)).encode()).hexdigest()[:8]
    tag = re.sub(r'[^A-Za-z0-9._-]', '_', f'torch{torch_version}-sm{arch.replace(".", "")}')
    return f'mmcv2.1.0_ext-{tag}-{len(ops)}ops-{digest}.so'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sdist', required=True, help='mmcv-2.1.0.tar.gz')
    parser.add_argument('--dest', required=True, help='folder to unpack and build in')
    parser.add_argument('--ops', nargs='+', default=list(KEEP),
                        help=f'CUDA kernels to compile, or "all" (default: {" ".join(KEEP)})')
    parser.add_argument('--jobs', type=int, default=os.cpu_count())
    parser.add_argument('--arch', help="TORCH_CUDA_ARCH_LIST (default: this GPU's, e.g. 9.0)")
    parser.add_argument('--build-site', help='folder put first on PYTHONPATH for setup.py '
                        '(setuptools < 70: mmcv 2.1.0 imports pkg_resources)')
    parser.add_argument('--cache', help='folder that may hold a library saved by --save')
    parser.add_argument('--save', help='folder to copy the built library to (stripped)')
    parser.add_argument('--summary', help='JSON file for what was built and how long it took')
    args = parser.parse_args(argv)

    import torch
    arch = args.arch or '%d.%d' % torch.cuda.get_device_capability()
    start = time.time()
    src = extract(args.sdist, args.dest)
    all_ops = args.ops == ['all']
    left_out = [] if all_ops else leave_out(src, args.ops)
    ops = (sorted(re.sub(r'(_cuda)?\.cu$', '', osp.basename(f)) for f in cuda_sources(src))
           if all_ops else sorted(args.ops))
    counts = count_sources(src)
    summary = dict(arch=arch, torch=torch.__version__, ops=ops, left_out=len(left_out),
                   compiled=counts, compiled_total=sum(counts.values()))
    name = cache_name(torch.__version__, arch, ops)
    cached = osp.join(args.cache, name) if args.cache else None
    if cached and osp.exists(cached):
        log(f'using the saved library {cached}')
        lib = osp.join(src, 'mmcv', f'_ext{_ext_suffix()}')
        shutil.copy(cached, lib)
        summary.update(from_cache=True, stubbed=None)
    else:
        log(f'compiling {summary["compiled_total"]} files ({counts}) for sm_{arch}, '
            f'{args.jobs} jobs; CUDA kernels: {" ".join(ops)}')
        env = dict(os.environ, MMCV_WITH_OPS='1', FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST=arch,
                   MAX_JOBS=str(args.jobs))
        if args.build_site:
            env['PYTHONPATH'] = os.pathsep.join(
                [args.build_site, env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
        log_file = osp.join(args.dest, 'build.log')
        lib = build_ext(src, env, log_file)
        summary['compile_s'] = round(time.time() - start, 1)
        from torch.utils.cpp_extension import CUDA_HOME
        site = osp.dirname(osp.dirname(torch.__file__))
        lib_path = ([osp.join(osp.dirname(torch.__file__), 'lib'),
                     osp.join(CUDA_HOME, 'lib64') if CUDA_HOME else None] +
                    sorted(glob.glob(osp.join(site, 'nvidia', '**', 'lib'), recursive=True)))
        missing, not_found = undefined_symbols(lib, lib_path)
        if not_found:
            raise SystemExit(f'ldd -r found no {not_found} (searched {lib_path}): cannot '
                             'tell which undefined symbols are left-out kernels')
        strangers = check_left_out(missing, left_out)
        if strangers:
            raise SystemExit('undefined symbols that no left-out kernel defines:\n  ' +
                             '\n  '.join(strangers))
        if missing:
            log(f'{len(missing)} launchers of {len(left_out)} left-out kernel files -> stub')
            lib = link_stubs(src, lib, missing, env, log_file, osp.join(args.dest, 'stub'))
            still, _ = undefined_symbols(lib, lib_path)
            if still:
                raise SystemExit(f'still undefined after linking the stubs: {still[:5]}')
        summary.update(from_cache=False, stubbed=len(missing))
    check = subprocess.run(
        [sys.executable, '-c', 'import mmcv, mmcv.ops; print(mmcv.__version__)'],
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get('PYTHONPATH', '')])),
        capture_output=True, text=True)
    if check.returncode:
        raise SystemExit(f'import mmcv.ops failed:\n{check.stderr[-3000:]}')
    summary['seconds'] = round(time.time() - start, 1)
    if args.save and not summary['from_cache']:
        os.makedirs(args.save, exist_ok=True)
        saved = osp.join(args.save, name)
        shutil.copy(lib, saved)
        subprocess.run(['strip', '--strip-debug', saved], check=False)
        summary['saved'] = saved
        summary['saved_mb'] = round(osp.getsize(saved) / 2**20, 1)
    log(json.dumps(summary))
    if args.summary:
        with open(args.summary, 'w') as f:
            json.dump(summary, f, indent=1)
    print(src)


def _ext_suffix():
    import sysconfig
    return sysconfig.get_config_var('EXT_SUFFIX')


if __name__ == '__main__':
    main()
