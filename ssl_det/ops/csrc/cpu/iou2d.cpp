// Axis-aligned box overlaps (IoU / IoF / GIoU) on the CPU, forward and backward.
//
// The pairwise forward is memory-bound (4k x 4k writes 64 MB), so b is first split into
// structure-of-arrays columns with its areas precomputed; the inner loop over b is then
// branch-free and gcc vectorises it. Rows are spread over torch's intra-op threads.
#include <ATen/Parallel.h>

#include <vector>

#include "iou2d_math.h"
#include "ops.h"

namespace ssl_det {
namespace {

// Rows per task: enough pairs per chunk that thread start-up is amortised.
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)); }

template <int kMode, typename T>
void forward_pairwise(const T* a, const T* b, int64_t n, int64_t m, T eps, T* out) {
  // Columns of b: x1, y1, x2, y2, area.
  std::vector<T> soa(5 * m);
  T *bx1 = soa.data(), *by1 = bx1 + m, *bx2 = by1 + m, *by2 = bx2 + m, *bar = by2 + m;
  for (int64_t j = 0; j < m; ++j) {
    bx1[j] = b[4 * j];
    by1[j] = b[4 * j + 1];
    bx2[j] = b[4 * j + 2];
    by2[j] = b[4 * j + 3];
    bar[j] = iou2d::box_area(bx1[j], by1[j], bx2[j], by2[j]);
  }
  at::parallel_for(0, n, row_grain(m), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T ax1 = a[4 * i], ay1 = a[4 * i + 1], ax2 = a[4 * i + 2], ay2 = a[4 * i + 3];
      const T area_a = iou2d::box_area(ax1, ay1, ax2, ay2);
      T* row = out + i * m;
#pragma GCC ivdep
      for (int64_t j = 0; j < m; ++j) {
        row[j] = iou2d::pair_forward<kMode>(ax1, ay1, ax2, ay2, area_a, bx1[j], by1[j],
                                            bx2[j], by2[j], bar[j], eps);
      }
    }
  });
}

template <int kMode, typename T>
void forward_aligned(const T* a, const T* b, int64_t n, T eps, T* out) {
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T* p = a + 4 * i;
      const T* q = b + 4 * i;
      out[i] = iou2d::pair_forward<kMode>(p[0], p[1], p[2], p[3],
                                          iou2d::box_area(p[0], p[1], p[2], p[3]), q[0], q[1],
                                          q[2], q[3], iou2d::box_area(q[0], q[1], q[2], q[3]),
                                          eps);
    }
  });
}

// Pairwise backward in two race-free passes: rows of a (each thread owns its rows of
// grad_a), then column blocks of b (each thread owns its columns of grad_b, walking grad
// row by row so that reads stay contiguous). Sums are kept in double.
template <int kMode, typename T>
void backward_pairwise(const T* g, const T* a, const T* b, int64_t n, int64_t m, T eps,
                       T* ga, T* gb) {
  at::parallel_for(0, n, row_grain(m), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      double acc[4] = {0, 0, 0, 0};
      for (int64_t j = 0; j < m; ++j) {
        T da[4] = {0, 0, 0, 0}, db[4] = {0, 0, 0, 0};
        iou2d::pair_backward<kMode>(a + 4 * i, b + 4 * j, g[i * m + j], eps, da, db);
        for (int c = 0; c < 4; ++c) acc[c] += da[c];
      }
      for (int c = 0; c < 4; ++c) ga[4 * i + c] = static_cast<T>(acc[c]);
    }
  });
  at::parallel_for(0, m, 256, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(4 * (end - begin), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = begin; j < end; ++j) {
        T da[4] = {0, 0, 0, 0}, db[4] = {0, 0, 0, 0};
        iou2d::pair_backward<kMode>(a + 4 * i, b + 4 * j, g[i * m + j], eps, da, db);
        for (int c = 0; c < 4; ++c) acc[4 * (j - begin) + c] += db[c];
      }
    }
    for (int64_t k = 0; k < 4 * (end - begin); ++k) gb[4 * begin + k] = static_cast<T>(acc[k]);
  });
}

template <int kMode, typename T>
void backward_aligned(const T* g, const T* a, const T* b, int64_t n, T eps, T* ga, T* gb) {
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T da[4] = {0, 0, 0, 0}, db[4] = {0, 0, 0, 0};
      iou2d::pair_backward<kMode>(a + 4 * i, b + 4 * i, g[i], eps, da, db);
      for (int c = 0; c < 4; ++c) {
        ga[4 * i + c] = da[c];
        gb[4 * i + c] = db[c];
      }
    }
  });
}

// Turns the runtime mode into the template argument, so each loop is compiled per mode.
template <typename F>
void dispatch_mode(int64_t mode, F&& f) {
  switch (mode) {
    case kIoU: f(std::integral_constant<int, kIoU>()); break;
    case kIoF: f(std::integral_constant<int, kIoF>()); break;
    case kGIoU: f(std::integral_constant<int, kGIoU>()); break;
    default: TORCH_CHECK(false, "bbox_overlaps: unknown mode code ", mode);
  }
}

void check_inputs(const at::Tensor& a, const at::Tensor& b, bool aligned) {
  TORCH_CHECK(a.dim() == 2 && a.size(1) == 4 && b.dim() == 2 && b.size(1) == 4,
              "bbox_overlaps: boxes must be (N, 4)");
  TORCH_CHECK(a.is_contiguous() && b.is_contiguous(), "bbox_overlaps: boxes must be contiguous");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "bbox_overlaps: dtypes differ");
  TORCH_CHECK(!aligned || a.size(0) == b.size(0), "bbox_overlaps: aligned needs N == M");
}

}  // namespace

at::Tensor bbox_overlaps_cpu(const at::Tensor& a, const at::Tensor& b, int64_t mode,
                             bool aligned, double eps) {
  check_inputs(a, b, aligned);
  const int64_t n = a.size(0), m = b.size(0);
  at::Tensor out = aligned ? at::empty({n}, a.options()) : at::empty({n, m}, a.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "bbox_overlaps_cpu", [&] {
    dispatch_mode(mode, [&](auto mode_c) {
      constexpr int kMode = decltype(mode_c)::value;
      if (aligned) {
        forward_aligned<kMode>(a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), n,
                               static_cast<scalar_t>(eps), out.data_ptr<scalar_t>());
      } else {
        forward_pairwise<kMode>(a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), n, m,
                                static_cast<scalar_t>(eps), out.data_ptr<scalar_t>());
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> bbox_overlaps_backward_cpu(
    const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b, int64_t mode,
    bool aligned, double eps) {
  check_inputs(a, b, aligned);
  const int64_t n = a.size(0), m = b.size(0);
  at::Tensor g = grad.contiguous();
  TORCH_CHECK(g.numel() == (aligned ? n : n * m), "bbox_overlaps backward: bad grad shape");
  at::Tensor ga = at::zeros_like(a), gb = at::zeros_like(b);
  if (g.numel() == 0) return {ga, gb};
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "bbox_overlaps_backward_cpu", [&] {
    dispatch_mode(mode, [&](auto mode_c) {
      constexpr int kMode = decltype(mode_c)::value;
      const auto e = static_cast<scalar_t>(eps);
      if (aligned) {
        backward_aligned<kMode>(g.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(),
                                b.data_ptr<scalar_t>(), n, e, ga.data_ptr<scalar_t>(),
                                gb.data_ptr<scalar_t>());
      } else {
        backward_pairwise<kMode>(g.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(),
                                 b.data_ptr<scalar_t>(), n, m, e, ga.data_ptr<scalar_t>(),
                                 gb.data_ptr<scalar_t>());
      }
    });
  });
  return {ga, gb};
}

}  // namespace ssl_det
