// Soft Teacher's box jitter and jitter uncertainty on CUDA (float, half, double); the same
// contract as csrc/cpu/jitter.cpp: jitter computes in the boxes' opmath type (float for
// half) with mmdet's bracketing, uncertainty accumulates in double.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "ops.h"

namespace ssl_det {
namespace {

constexpr int kThreads = 256;

int grid_1d(int64_t n) {
  return static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)));
}

// Products rounded on their own: nvcc would otherwise fuse `box + noise * step` into an
// FMA, and the result would differ in the last bit from mmdet's separate torch ops.
__device__ __forceinline__ float mul_rn(float p, float q) { return __fmul_rn(p, q); }
__device__ __forceinline__ double mul_rn(double p, double q) { return __dmul_rn(p, q); }

// One thread per output row n * times + t (box-major); noise is (times, N, 4).
template <typename T>
__global__ void jitter_kernel(const T* __restrict__ boxes,
                              const at::opmath_type<T>* __restrict__ noise, int64_t n,
                              int64_t k, int64_t times, at::opmath_type<T> scale,
                              T* __restrict__ out) {
  using A = at::opmath_type<T>;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < n * times;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = r / times, t = r - i * times;
    const T* box = boxes + i * k;
    const A x1 = box[0], y1 = box[1], x2 = box[2], y2 = box[3];
    const A w = x2 - x1 > A(1) ? x2 - x1 : A(1);
    const A h = y2 - y1 > A(1) ? y2 - y1 : A(1);
    const A* eps = noise + (t * n + i) * 4;
    T* o = out + r * k;
    const A step_x = mul_rn(w, scale), step_y = mul_rn(h, scale);
    o[0] = static_cast<T>(x1 + mul_rn(eps[0], step_x));
    o[1] = static_cast<T>(y1 + mul_rn(eps[1], step_y));
    o[2] = static_cast<T>(x2 + mul_rn(eps[2], step_x));
    o[3] = static_cast<T>(y2 + mul_rn(eps[3], step_y));
    for (int64_t c = 4; c < k; ++c) o[c] = box[c];
  }
}

// One thread per box; see uncertainty_kernel in csrc/cpu/jitter.cpp for the maths.
template <typename T>
__global__ void uncertainty_kernel(const T* __restrict__ refined,
                                   const int64_t* __restrict__ labels, int64_t n, int64_t k,
                                   int64_t times, T* __restrict__ out) {
  const int64_t channels = k / 4;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ch = channels == 1 ? 0 : labels[i];
    if (ch < 0 || ch >= channels) {
      out[i] = static_cast<T>(NAN);
      continue;
    }
    const T* base = refined + i * times * k + ch * 4;
    double mean[4] = {0, 0, 0, 0}, var[4] = {0, 0, 0, 0};
    for (int64_t t = 0; t < times; ++t)
      for (int c = 0; c < 4; ++c) mean[c] += static_cast<double>(base[t * k + c]);
    for (int c = 0; c < 4; ++c) mean[c] /= times;
    for (int64_t t = 0; t < times; ++t)
      for (int c = 0; c < 4; ++c) {
        const double d = static_cast<double>(base[t * k + c]) - mean[c];
        var[c] += d * d;
      }
    const double w = fmax(mean[2] - mean[0], 1.0);
    const double h = fmax(mean[3] - mean[1], 1.0);
    const double size[4] = {w, h, w, h};
    double sum = 0;
    for (int c = 0; c < 4; ++c) sum += sqrt(var[c] / (times - 1)) / size[c];
    out[i] = static_cast<T>(sum / 4);
  }
}

}  // namespace

at::Tensor box_jitter_cuda(const at::Tensor& boxes, const at::Tensor& noise, double scale) {
  TORCH_CHECK(boxes.is_cuda() && noise.device() == boxes.device(),
              "box_jitter: boxes and noise must be on the same CUDA device");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) >= 4, "box_jitter: boxes must be (N, K>=4)");
  TORCH_CHECK(noise.dim() == 3 && noise.size(1) == boxes.size(0) && noise.size(2) == 4,
              "box_jitter: noise must be (times, N, 4)");
  TORCH_CHECK(boxes.is_contiguous() && noise.is_contiguous(), "box_jitter: not contiguous");
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0), k = boxes.size(1), times = noise.size(0);
  at::Tensor out = at::empty({n * times, k}, boxes.options());
  if (out.numel() == 0) return out;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(boxes.scalar_type(), "box_jitter_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    TORCH_CHECK(noise.scalar_type() == c10::CppTypeToScalarType<A>::value,
                "box_jitter: noise must be in the boxes' compute dtype");
    jitter_kernel<scalar_t><<<grid_1d(n * times), kThreads, 0, stream>>>(
        boxes.data_ptr<scalar_t>(), noise.data_ptr<A>(), n, k, times, static_cast<A>(scale),
        out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor jitter_uncertainty_cuda(const at::Tensor& refined, const at::Tensor& labels,
                                   int64_t times) {
  TORCH_CHECK(refined.is_cuda(), "jitter_uncertainty: refined must be on CUDA");
  TORCH_CHECK(refined.dim() == 2 && refined.size(1) % 4 == 0 && refined.size(1) > 0,
              "jitter_uncertainty: refined must be (N * times, 4C)");
  TORCH_CHECK(times >= 2 && refined.size(0) % times == 0,
              "jitter_uncertainty: rows must be a multiple of times >= 2");
  TORCH_CHECK(refined.is_contiguous() && labels.is_contiguous(),
              "jitter_uncertainty: not contiguous");
  const c10::cuda::CUDAGuard guard(refined.device());
  const int64_t n = refined.size(0) / times, k = refined.size(1);
  TORCH_CHECK(k == 4 || (labels.scalar_type() == at::kLong && labels.numel() == n &&
                         labels.device() == refined.device()),
              "jitter_uncertainty: labels must be (N,) int64 on the refined boxes' device");
  at::Tensor out = at::empty({n}, refined.options());
  if (n == 0) return out;
  const int64_t* lab = k == 4 ? nullptr : labels.data_ptr<int64_t>();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(refined.scalar_type(), "jitter_uncertainty_cuda", [&] {
    uncertainty_kernel<scalar_t><<<grid_1d(n), kThreads, 0, stream>>>(
        refined.data_ptr<scalar_t>(), lab, n, k, times, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace ssl_det
