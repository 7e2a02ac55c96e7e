"""Builds ssl_det's compiled ops (ssl_det._ext); all metadata lives in setup.cfg.

C++ sources are always compiled. CUDA sources join when torch has CUDA and nvcc is found,
or when SSL_DET_FORCE_CUDA=1.
"""
import glob
import os

from setuptools import setup

from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension


def make_extension():
    import torch
    here = os.path.dirname(os.path.abspath(__file__))
    csrc = os.path.join('ssl_det', 'ops', 'csrc')
    sources = sorted(glob.glob(os.path.join(csrc, '*.cpp')) +
                     glob.glob(os.path.join(csrc, 'cpu', '*.cpp')))
    cxx_flags = ['-O3', '-std=c++17', '-fopenmp']
    extra_link_args = ['-fopenmp']
    force_cuda = os.environ.get('SSL_DET_FORCE_CUDA', '0') == '1'
    with_cuda = force_cuda or (torch.cuda.is_available() and CUDA_HOME is not None)
    define_macros = []
    if with_cuda:
        sources += sorted(glob.glob(os.path.join(csrc, 'cuda', '*.cu')) +
                          glob.glob(os.path.join(csrc, 'cuda', '*.cpp')))
        define_macros.append(('WITH_CUDA', None))
        return CUDAExtension(
            'ssl_det._ext', sources, include_dirs=[os.path.join(here, csrc)],
            define_macros=define_macros, extra_link_args=extra_link_args,
            extra_compile_args={'cxx': cxx_flags, 'nvcc': ['-O3', '-std=c++17']})
    return CppExtension('ssl_det._ext', sources, include_dirs=[os.path.join(here, csrc)],
                        define_macros=define_macros, extra_compile_args={'cxx': cxx_flags},
                        extra_link_args=extra_link_args)


setup(ext_modules=[make_extension()], cmdclass={'build_ext': BuildExtension})
