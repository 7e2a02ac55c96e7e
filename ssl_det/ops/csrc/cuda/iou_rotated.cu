// Rotated-box IoU seen from above (BEV) and 3D IoU on CUDA, for float and double inputs
// (computed in double, see rotated_math.h, which is shared with the CPU code).
//
// A first kernel turns every box into its BoxGeom (corners, bounds, area) once; the pair
// kernel then gives each thread one column j and a few rows, like the 2D forward, so writes
// are coalesced and most threads of a scattered scene leave after the bounds test.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "ops.h"
#include "rotated_math.h"

namespace ssl_det {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = 4;
constexpr int64_t kMaxGridY = 65535;

using rotated::BoxGeom;

template <typename T>
__global__ void geom_kernel(const T* __restrict__ boxes, int64_t n, int ncols,
                            BoxGeom* __restrict__ geoms) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    geoms[i] = rotated::make_geom(boxes + i * ncols, ncols);
}

template <typename T>
__global__ void pairwise_kernel(const BoxGeom* __restrict__ ga, const BoxGeom* __restrict__ gb,
                                int64_t n, int64_t m, bool with_height, double eps,
                                T* __restrict__ out) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= m) return;
  const BoxGeom b = gb[j];
  for (int64_t i0 = static_cast<int64_t>(blockIdx.y) * kRowsPerBlock; i0 < n;
       i0 += static_cast<int64_t>(gridDim.y) * kRowsPerBlock) {
    const int64_t i1 = i0 + kRowsPerBlock < n ? i0 + kRowsPerBlock : n;
    for (int64_t i = i0; i < i1; ++i)
      out[i * m + j] = static_cast<T>(rotated::pair_iou(ga[i], b, with_height, eps));
  }
}

template <typename T>
__global__ void aligned_kernel(const BoxGeom* __restrict__ ga, const BoxGeom* __restrict__ gb,
                               int64_t n, bool with_height, double eps, T* __restrict__ out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = static_cast<T>(rotated::pair_iou(ga[i], gb[i], with_height, eps));
}

int grid_1d(int64_t n) {
  return static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)));
}

// BoxGeom buffer of n boxes in a byte tensor on the boxes' device (torch's caching
// allocator returns 256-byte aligned memory, enough for the doubles inside).
at::Tensor make_geoms(const at::Tensor& boxes, cudaStream_t stream) {
  const int64_t n = boxes.size(0);
  at::Tensor buf = at::empty({n * static_cast<int64_t>(sizeof(BoxGeom))},
                             boxes.options().dtype(at::kByte));
  if (n == 0) return buf;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "rotated_iou_geom", [&] {
    geom_kernel<scalar_t><<<grid_1d(n), kThreads, 0, stream>>>(
        boxes.data_ptr<scalar_t>(), n, static_cast<int>(boxes.size(1)),
        reinterpret_cast<BoxGeom*>(buf.data_ptr<uint8_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return buf;
}

}  // namespace

at::Tensor rotated_iou_cuda(const at::Tensor& a, const at::Tensor& b, bool aligned,
                            bool with_height, double eps) {
  TORCH_CHECK(a.is_cuda() && b.is_cuda() && a.device() == b.device(),
              "rotated_iou: boxes must be on the same CUDA device");
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2, "rotated_iou: boxes must be 2-D");
  TORCH_CHECK((a.size(1) == 5 || a.size(1) == 7) && (b.size(1) == 5 || b.size(1) == 7),
              "rotated_iou: boxes must have 5 or 7 columns");
  TORCH_CHECK(!with_height || (a.size(1) == 7 && b.size(1) == 7),
              "rotated_iou: 3D IoU needs 7 columns");
  TORCH_CHECK(a.is_contiguous() && b.is_contiguous(), "rotated_iou: boxes must be contiguous");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "rotated_iou: dtypes differ");
  TORCH_CHECK(!aligned || a.size(0) == b.size(0), "rotated_iou: aligned needs N == M");
  const c10::cuda::CUDAGuard guard(a.device());
  const int64_t n = a.size(0), m = b.size(0);
  at::Tensor out = aligned ? at::empty({n}, a.options()) : at::empty({n, m}, a.options());
  if (out.numel() == 0) return out;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor geom_a = make_geoms(a, stream);
  const at::Tensor geom_b = make_geoms(b, stream);
  const auto* pa = reinterpret_cast<const BoxGeom*>(geom_a.data_ptr<uint8_t>());
  const auto* pb = reinterpret_cast<const BoxGeom*>(geom_b.data_ptr<uint8_t>());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rotated_iou_cuda", [&] {
    if (aligned) {
      aligned_kernel<scalar_t><<<grid_1d(n), kThreads, 0, stream>>>(
          pa, pb, n, with_height, eps, out.data_ptr<scalar_t>());
    } else {
      const dim3 grid(static_cast<unsigned>((m + kThreads - 1) / kThreads),
                      static_cast<unsigned>(std::min<int64_t>(
                          (n + kRowsPerBlock - 1) / kRowsPerBlock, kMaxGridY)));
      pairwise_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(pa, pb, n, m, with_height, eps,
                                                              out.data_ptr<scalar_t>());
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace ssl_det
