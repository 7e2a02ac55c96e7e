// Rotated-box IoU seen from above (BEV) and 3D IoU on the CPU.
//
// Each box's corners, bounds and area are computed once (rotated_math.h), not per pair.
// A row then first runs a branch-free bounds test over all of b, which is all the work in a
// scattered scene, and clips polygons only for the surviving candidates.
#include <ATen/Parallel.h>

#include <vector>

#include "ops.h"
#include "rotated_math.h"

namespace ssl_det {
namespace {

template <typename T>
std::vector<rotated::BoxGeom> make_geoms(const at::Tensor& boxes) {
  const int64_t n = boxes.size(0);
  const int ncols = static_cast<int>(boxes.size(1));
  const T* p = boxes.data_ptr<T>();
  std::vector<rotated::BoxGeom> geoms(n);
  at::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) geoms[i] = rotated::make_geom(p + i * ncols, ncols);
  });
  return geoms;
}

template <typename T>
void pairwise(const std::vector<rotated::BoxGeom>& ga, const std::vector<rotated::BoxGeom>& gb,
              bool with_height, double eps, T* out) {
  const int64_t n = ga.size(), m = gb.size();
  // Bounds of b as contiguous columns: the rejection loop reads 32 bytes per box instead of
  // striding through the whole BoxGeom.
  std::vector<double> bounds(4 * m);
  double *bxmin = bounds.data(), *bxmax = bxmin + m, *bymin = bxmax + m, *bymax = bymin + m;
  for (int64_t j = 0; j < m; ++j) {
    bxmin[j] = gb[j].xmin;
    bxmax[j] = gb[j].xmax;
    bymin[j] = gb[j].ymin;
    bymax[j] = gb[j].ymax;
  }
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(m, 1));
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> cand(m);
    for (int64_t i = begin; i < end; ++i) {
      const rotated::BoxGeom& a = ga[i];
      T* row = out + i * m;
      // Zero the row and compact the indices whose bounds overlap, without branches.
      int64_t nc = 0;
      for (int64_t j = 0; j < m; ++j) {
        const bool hit = a.xmax > bxmin[j] && bxmax[j] > a.xmin && a.ymax > bymin[j] &&
                         bymax[j] > a.ymin;
        row[j] = T(0);
        cand[nc] = j;
        nc += hit;
      }
      for (int64_t k = 0; k < nc; ++k) {
        const int64_t j = cand[k];
        row[j] = static_cast<T>(rotated::pair_iou(a, gb[j], with_height, eps));
      }
    }
  });
}

template <typename T>
void aligned_pairs(const std::vector<rotated::BoxGeom>& ga,
                   const std::vector<rotated::BoxGeom>& gb, bool with_height, double eps,
                   T* out) {
  at::parallel_for(0, static_cast<int64_t>(ga.size()), 1024, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = static_cast<T>(rotated::pair_iou(ga[i], gb[i], with_height, eps));
  });
}

}  // namespace

at::Tensor rotated_iou_cpu(const at::Tensor& a, const at::Tensor& b, bool aligned,
                           bool with_height, double eps) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2, "rotated_iou: boxes must be 2-D");
  TORCH_CHECK((a.size(1) == 5 || a.size(1) == 7) && (b.size(1) == 5 || b.size(1) == 7),
              "rotated_iou: boxes must have 5 or 7 columns");
  TORCH_CHECK(!with_height || (a.size(1) == 7 && b.size(1) == 7),
              "rotated_iou: 3D IoU needs 7 columns");
  TORCH_CHECK(a.is_contiguous() && b.is_contiguous(), "rotated_iou: boxes must be contiguous");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "rotated_iou: dtypes differ");
  TORCH_CHECK(!aligned || a.size(0) == b.size(0), "rotated_iou: aligned needs N == M");
  const int64_t n = a.size(0), m = b.size(0);
  at::Tensor out = aligned ? at::empty({n}, a.options()) : at::empty({n, m}, a.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rotated_iou_cpu", [&] {
    const auto ga = make_geoms<scalar_t>(a);
    const auto gb = make_geoms<scalar_t>(b);
    if (aligned) {
      aligned_pairs(ga, gb, with_height, eps, out.data_ptr<scalar_t>());
    } else {
      pairwise(ga, gb, with_height, eps, out.data_ptr<scalar_t>());
    }
  });
  return out;
}

}  // namespace ssl_det
