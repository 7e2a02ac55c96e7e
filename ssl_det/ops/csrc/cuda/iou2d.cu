// Axis-aligned box overlaps (IoU / IoF / GIoU) on CUDA, forward and backward, for float,
// half (computed in float) and double. The per-pair maths is iou2d_math.h, shared with the
// CPU code.
//
// The pairwise forward writes N*M outputs and reads almost nothing, so it should stream at
// the write bandwidth: a thread owns kCols consecutive columns, keeps those boxes of b and
// their areas in registers and walks kRowsPerBlock rows; consecutive threads write
// consecutive addresses, with one vector store per row when M is a multiple of 4 (kCols = 4).
// Measured on an H100 it writes ~2.0 TB/s (60% of nominal, ~70% of a plain fill), limited by
// instruction issue; see fwd_div in iou2d_math.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "iou2d_math.h"
#include "ops.h"

namespace ssl_det {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = 8;
constexpr int64_t kMaxGridY = 65535;

// kCols outputs of one row, stored with a single (vector) instruction.
template <typename T, int kCols>
struct alignas(kCols * sizeof(T)) OutVec {
  T v[kCols];
};

template <int kMode, int kCols, typename T>
__global__ void forward_pairwise_kernel(const T* __restrict__ a, const T* __restrict__ b,
                                        int64_t n, int64_t m, at::opmath_type<T> eps,
                                        T* __restrict__ out) {
  using A = at::opmath_type<T>;
  const int64_t j0 = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * kCols;
  if (j0 >= m) return;  // with kCols > 1, M is a multiple of kCols: all kCols are in range
  A bx1[kCols], by1[kCols], bx2[kCols], by2[kCols], area_b[kCols];
#pragma unroll
  for (int c = 0; c < kCols; ++c) {
    const T* p = b + 4 * (j0 + c);
    bx1[c] = p[0];
    by1[c] = p[1];
    bx2[c] = p[2];
    by2[c] = p[3];
    area_b[c] = iou2d::box_area(bx1[c], by1[c], bx2[c], by2[c]);
  }
  // gridDim.y is capped, so row chunks are walked with a stride when N is large.
  for (int64_t i0 = static_cast<int64_t>(blockIdx.y) * kRowsPerBlock; i0 < n;
       i0 += static_cast<int64_t>(gridDim.y) * kRowsPerBlock) {
    const int64_t i1 = i0 + kRowsPerBlock < n ? i0 + kRowsPerBlock : n;
    for (int64_t i = i0; i < i1; ++i) {
      const A ax1 = a[4 * i], ay1 = a[4 * i + 1], ax2 = a[4 * i + 2], ay2 = a[4 * i + 3];
      const A area_a = iou2d::box_area(ax1, ay1, ax2, ay2);
      OutVec<T, kCols> r;
#pragma unroll
      for (int c = 0; c < kCols; ++c)
        r.v[c] = static_cast<T>(iou2d::pair_forward<kMode>(
            ax1, ay1, ax2, ay2, area_a, bx1[c], by1[c], bx2[c], by2[c], area_b[c], eps));
      *reinterpret_cast<OutVec<T, kCols>*>(out + i * m + j0) = r;
    }
  }
}

template <int kMode, typename T>
__global__ void forward_aligned_kernel(const T* __restrict__ a, const T* __restrict__ b,
                                       int64_t n, at::opmath_type<T> eps, T* __restrict__ out) {
  using A = at::opmath_type<T>;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const A ax1 = a[4 * i], ay1 = a[4 * i + 1], ax2 = a[4 * i + 2], ay2 = a[4 * i + 3];
    const A bx1 = b[4 * i], by1 = b[4 * i + 1], bx2 = b[4 * i + 2], by2 = b[4 * i + 3];
    out[i] = static_cast<T>(iou2d::pair_forward<kMode>(
        ax1, ay1, ax2, ay2, iou2d::box_area(ax1, ay1, ax2, ay2), bx1, by1, bx2, by2,
        iou2d::box_area(bx1, by1, bx2, by2), eps));
  }
}

// Sum over the block; the result is valid in thread 0. Every thread of the block must call
// it (it synchronises), and blockDim.x must be a multiple of 32.
template <typename A>
__device__ A block_sum(A v) {
  __shared__ A partial[32];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : A(0);
  if (warp == 0)
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  __syncthreads();  // partial is reused by the next call
  return v;
}

template <typename T, typename A = at::opmath_type<T>>
__device__ void load_box(const T* p, A* q) {
  for (int c = 0; c < 4; ++c) q[c] = static_cast<A>(p[c]);
}

// Backward of the pairwise overlap without atomics (so it is deterministic): one block per
// box of a sums over the columns of its row for grad_a (kPerRow), or one block per box of b
// sums over the rows of its column for grad_b.
template <int kMode, bool kPerRow, typename T>
__global__ void backward_pairwise_kernel(const T* __restrict__ g, const T* __restrict__ a,
                                         const T* __restrict__ b, int64_t n, int64_t m,
                                         at::opmath_type<T> eps, T* __restrict__ grad) {
  using A = at::opmath_type<T>;
  const int64_t owner = blockIdx.x;  // a row of a (kPerRow) or a column of b
  const int64_t count = kPerRow ? m : n;
  A own[4];
  load_box(kPerRow ? a + 4 * owner : b + 4 * owner, own);
  A acc[4] = {0, 0, 0, 0};
  for (int64_t k = threadIdx.x; k < count; k += blockDim.x) {
    A other[4];
    load_box(kPerRow ? b + 4 * k : a + 4 * k, other);
    const A go = static_cast<A>(kPerRow ? g[owner * m + k] : g[k * m + owner]);
    A da[4] = {0, 0, 0, 0}, db[4] = {0, 0, 0, 0};
    if (kPerRow) {
      iou2d::pair_backward<kMode>(own, other, go, eps, da, db);
      for (int c = 0; c < 4; ++c) acc[c] += da[c];
    } else {
      iou2d::pair_backward<kMode>(other, own, go, eps, da, db);
      for (int c = 0; c < 4; ++c) acc[c] += db[c];
    }
  }
  for (int c = 0; c < 4; ++c) {
    const A s = block_sum(acc[c]);
    if (threadIdx.x == 0) grad[4 * owner + c] = static_cast<T>(s);
  }
}

template <int kMode, typename T>
__global__ void backward_aligned_kernel(const T* __restrict__ g, const T* __restrict__ a,
                                        const T* __restrict__ b, int64_t n,
                                        at::opmath_type<T> eps, T* __restrict__ ga,
                                        T* __restrict__ gb) {
  using A = at::opmath_type<T>;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    A pa[4], pb[4];
    load_box(a + 4 * i, pa);
    load_box(b + 4 * i, pb);
    A da[4] = {0, 0, 0, 0}, db[4] = {0, 0, 0, 0};
    iou2d::pair_backward<kMode>(pa, pb, static_cast<A>(g[i]), eps, da, db);
    for (int c = 0; c < 4; ++c) {
      ga[4 * i + c] = static_cast<T>(da[c]);
      gb[4 * i + c] = static_cast<T>(db[c]);
    }
  }
}

template <typename F>
void dispatch_mode(int64_t mode, F&& f) {
  switch (mode) {
    case kIoU: f(std::integral_constant<int, kIoU>()); break;
    case kIoF: f(std::integral_constant<int, kIoF>()); break;
    case kGIoU: f(std::integral_constant<int, kGIoU>()); break;
    default: TORCH_CHECK(false, "bbox_overlaps: unknown mode code ", mode);
  }
}

int grid_1d(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535));
}

void check_inputs(const at::Tensor& a, const at::Tensor& b, bool aligned) {
  TORCH_CHECK(a.is_cuda() && b.is_cuda() && a.device() == b.device(),
              "bbox_overlaps: boxes must be on the same CUDA device");
  TORCH_CHECK(a.dim() == 2 && a.size(1) == 4 && b.dim() == 2 && b.size(1) == 4,
              "bbox_overlaps: boxes must be (N, 4)");
  TORCH_CHECK(a.is_contiguous() && b.is_contiguous(), "bbox_overlaps: boxes must be contiguous");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "bbox_overlaps: dtypes differ");
  TORCH_CHECK(!aligned || a.size(0) == b.size(0), "bbox_overlaps: aligned needs N == M");
}

}  // namespace

at::Tensor bbox_overlaps_cuda(const at::Tensor& a, const at::Tensor& b, int64_t mode,
                              bool aligned, double eps) {
  check_inputs(a, b, aligned);
  const c10::cuda::CUDAGuard guard(a.device());
  const int64_t n = a.size(0), m = b.size(0);
  at::Tensor out = aligned ? at::empty({n}, a.options()) : at::empty({n, m}, a.options());
  if (out.numel() == 0) return out;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(a.scalar_type(), "bbox_overlaps_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    dispatch_mode(mode, [&](auto mode_c) {
      constexpr int kMode = decltype(mode_c)::value;
      if (aligned) {
        forward_aligned_kernel<kMode, scalar_t><<<grid_1d(n), kThreads, 0, stream>>>(
            a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), n, static_cast<A>(eps),
            out.data_ptr<scalar_t>());
      } else {
        // Vector stores need every row to start on a 4-element boundary.
        constexpr int kVec = 4;
        const bool vec = m % kVec == 0 &&
            reinterpret_cast<uintptr_t>(out.data_ptr()) % (kVec * sizeof(scalar_t)) == 0;
        const int64_t cols_per_block = kThreads * (vec ? kVec : 1);
        const dim3 grid(static_cast<unsigned>((m + cols_per_block - 1) / cols_per_block),
                        static_cast<unsigned>(std::min<int64_t>(
                            (n + kRowsPerBlock - 1) / kRowsPerBlock, kMaxGridY)));
        if (vec) {
          forward_pairwise_kernel<kMode, kVec, scalar_t><<<grid, kThreads, 0, stream>>>(
              a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), n, m, static_cast<A>(eps),
              out.data_ptr<scalar_t>());
        } else {
          forward_pairwise_kernel<kMode, 1, scalar_t><<<grid, kThreads, 0, stream>>>(
              a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), n, m, static_cast<A>(eps),
              out.data_ptr<scalar_t>());
        }
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> bbox_overlaps_backward_cuda(
    const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b, int64_t mode,
    bool aligned, double eps) {
  check_inputs(a, b, aligned);
  const c10::cuda::CUDAGuard guard(a.device());
  const int64_t n = a.size(0), m = b.size(0);
  at::Tensor g = grad.contiguous();
  TORCH_CHECK(g.numel() == (aligned ? n : n * m), "bbox_overlaps backward: bad grad shape");
  TORCH_CHECK(g.scalar_type() == a.scalar_type(), "bbox_overlaps backward: grad dtype differs");
  at::Tensor ga = at::zeros_like(a), gb = at::zeros_like(b);
  if (g.numel() == 0) return {ga, gb};
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(a.scalar_type(), "bbox_overlaps_backward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    dispatch_mode(mode, [&](auto mode_c) {
      constexpr int kMode = decltype(mode_c)::value;
      const A e = static_cast<A>(eps);
      if (aligned) {
        backward_aligned_kernel<kMode, scalar_t><<<grid_1d(n), kThreads, 0, stream>>>(
            g.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), n, e,
            ga.data_ptr<scalar_t>(), gb.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      } else {
        // One block per owner box; gridDim.x allows up to 2^31 - 1 blocks.
        backward_pairwise_kernel<kMode, true, scalar_t>
            <<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
                g.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), n, m,
                e, ga.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        backward_pairwise_kernel<kMode, false, scalar_t>
            <<<static_cast<unsigned>(m), kThreads, 0, stream>>>(
                g.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), n, m,
                e, gb.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  });
  return {ga, gb};
}

}  // namespace ssl_det
