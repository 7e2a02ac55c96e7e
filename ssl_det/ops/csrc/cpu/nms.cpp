// Greedy NMS of axis-aligned boxes on the CPU, with the results of mmcv 2.1's CPU kernel
// (mmcv/ops/csrc/pytorch/cpu/nms.cpp), bit for bit.
//
// mmcv's semantics, kept operation for operation:
//   * the order is scores.sort(0, descending=true) (the same call, so ties break alike);
//   * areas are (x2 - x1 + offset) * (y2 - y1 + offset) in float32;
//   * a kept box i suppresses a later box j when, in float32,
//       w = max(0, min(x2i, x2j) - max(x1i, x1j) + offset), h likewise,
//       inter = w * h, inter / ((area_i + area_j) - inter) > (float) iou_threshold;
//   * the result lists the kept boxes' indices in score order.
// What differs is only the memory walk: mmcv reads box j through the index order[j] and skips
// suppressed boxes with a branch, so its inner loop cannot vectorise. Here the boxes are first
// gathered in score order into five contiguous arrays, and a kept box tests every later box
// without branches (a suppressed box stays suppressed, so testing it again changes nothing).
// The loop body is compiled for the baseline ISA and for AVX2 (chosen at run time), without
// FMA, so every lane performs mmcv's scalar operations and roundings. Single-threaded: the
// greedy scan is sequential, and its inputs (a few thousand proposals) are small.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "ops.h"

namespace ssl_det {
namespace {

// Clears keep[j] for every j in [begin, n) whose overlap with box (bx1, by1, bx2, by2) of
// area barea exceeds thr.
inline __attribute__((always_inline)) void suppress_body(
    const float* x1, const float* y1, const float* x2, const float* y2, const float* area,
    uint8_t* keep, int64_t begin, int64_t n, float bx1, float by1, float bx2, float by2,
    float barea, float offset, float thr) {
  for (int64_t j = begin; j < n; ++j) {
    const float xx1 = bx1 < x1[j] ? x1[j] : bx1;  // std::max(bx1, x1[j])
    const float yy1 = by1 < y1[j] ? y1[j] : by1;
    const float xx2 = x2[j] < bx2 ? x2[j] : bx2;  // std::min(bx2, x2[j])
    const float yy2 = y2[j] < by2 ? y2[j] : by2;
    const float dw = xx2 - xx1 + offset;
    const float dh = yy2 - yy1 + offset;
    const float w = 0.f < dw ? dw : 0.f;  // std::max(0.f, dw)
    const float h = 0.f < dh ? dh : 0.f;
    const float inter = w * h;
    const float ovr = inter / (barea + area[j] - inter);
    keep[j] = keep[j] & static_cast<uint8_t>(!(ovr > thr));
  }
}

void suppress_base(const float* x1, const float* y1, const float* x2, const float* y2,
                   const float* area, uint8_t* keep, int64_t begin, int64_t n, float bx1,
                   float by1, float bx2, float by2, float barea, float offset, float thr) {
  suppress_body(x1, y1, x2, y2, area, keep, begin, n, bx1, by1, bx2, by2, barea, offset, thr);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define SSL_DET_NMS_AVX2 1
__attribute__((target("avx2"))) void suppress_avx2(
    const float* x1, const float* y1, const float* x2, const float* y2, const float* area,
    uint8_t* keep, int64_t begin, int64_t n, float bx1, float by1, float bx2, float by2,
    float barea, float offset, float thr) {
  suppress_body(x1, y1, x2, y2, area, keep, begin, n, bx1, by1, bx2, by2, barea, offset, thr);
}
bool nms_cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#else
#define SSL_DET_NMS_AVX2 0
#endif

}  // namespace

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold,
                   int64_t offset) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "nms: boxes must be (N, 4), got ",
              boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "nms: scores must be (N,) for N = ", boxes.size(0), " boxes, got ", scores.sizes());
  TORCH_CHECK(boxes.scalar_type() == at::kFloat && scores.scalar_type() == at::kFloat,
              "nms: boxes and scores must be float32");
  TORCH_CHECK(offset == 0 || offset == 1, "nms: offset must be 0 or 1, got ", offset);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));

  const at::Tensor order_t = std::get<1>(scores.sort(0, /*descending=*/true));
  const at::Tensor sorted = boxes.index_select(0, order_t).contiguous();
  const float* b = sorted.data_ptr<float>();
  std::vector<float> x1(n), y1(n), x2(n), y2(n), area(n);
  const float off = static_cast<float>(offset);
  for (int64_t k = 0; k < n; ++k) {
    x1[k] = b[4 * k];
    y1[k] = b[4 * k + 1];
    x2[k] = b[4 * k + 2];
    y2[k] = b[4 * k + 3];
    area[k] = (x2[k] - x1[k] + off) * (y2[k] - y1[k] + off);
  }
  const float thr = static_cast<float>(iou_threshold);
  std::vector<uint8_t> keep(n, 1);
#if SSL_DET_NMS_AVX2
  auto* suppress = nms_cpu_has_avx2() ? &suppress_avx2 : &suppress_base;
#else
  auto* suppress = &suppress_base;
#endif
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!keep[i]) continue;
    ++kept;
    suppress(x1.data(), y1.data(), x2.data(), y2.data(), area.data(), keep.data(), i + 1, n,
             x1[i], y1[i], x2[i], y2[i], area[i], off, thr);
  }
  at::Tensor out = at::empty({kept}, boxes.options().dtype(at::kLong));
  int64_t* o = out.data_ptr<int64_t>();
  const int64_t* order = order_t.data_ptr<int64_t>();
  for (int64_t i = 0, k = 0; i < n; ++i) {
    if (keep[i]) o[k++] = order[i];
  }
  return out;
}

}  // namespace ssl_det
