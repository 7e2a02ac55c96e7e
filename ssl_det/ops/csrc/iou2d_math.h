// Per-pair maths of the axis-aligned overlap (IoU / IoF / GIoU), shared by the CPU loops and
// the CUDA kernels so that both devices compute exactly the same formula:
//
//   w = max(min(ax2, bx2) - max(ax1, bx1), 0)      (h likewise on y)
//   overlap = w * h;  area = (x2 - x1) * (y2 - y1)
//   union = max(area_a + area_b - overlap, eps)     (iof: max(area_a, eps))
//   iou = overlap / union
//   giou = iou - (E - union) / E,  E = max(enclosing w * enclosing h, eps)
//
// which is mmdet's `bbox_overlaps` (and ssl_det/ops/reference.py) operation for operation,
// so CPU results agree with the reference to rounding (CUDA float: see fwd_div).
#pragma once

#include <type_traits>

#include "ops.h"

#if defined(__CUDACC__)
#define SSL_HD __host__ __device__ __forceinline__
#else
#define SSL_HD inline
#endif

namespace ssl_det {
namespace iou2d {

// Ternaries rather than std::min/max: they compile to branch-free min/max instructions in
// both nvcc and gcc, which lets gcc vectorise the CPU inner loop over b.
template <typename T>
SSL_HD T min2(T p, T q) { return p < q ? p : q; }
template <typename T>
SSL_HD T max2(T p, T q) { return p > q ? p : q; }

template <typename T>
SSL_HD T box_area(T x1, T y1, T x2, T y2) { return (x2 - x1) * (y2 - y1); }

// The forward's divisions. The pairwise CUDA forward is bound by instruction issue, not by
// memory, and an IEEE float division is its most expensive step: on an H100 it wrote 1.25
// TB/s with it and 2.0 TB/s with __fdividef (a plain fill of the output: 2.9 TB/s). So on
// the GPU float (and half, computed in float) divides with __fdividef, within 2 ulp; double,
// and the CPU, divide exactly.
template <typename T>
SSL_HD T fwd_div(T p, T q) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same<T, float>::value) return __fdividef(p, q);
#endif
  return p / q;
}

// Overlap of one pair; area_a / area_b are precomputed once per box by the callers.
template <int kMode, typename T>
SSL_HD T pair_forward(T ax1, T ay1, T ax2, T ay2, T area_a, T bx1, T by1, T bx2, T by2,
                      T area_b, T eps) {
  T w = min2(ax2, bx2) - max2(ax1, bx1);
  T h = min2(ay2, by2) - max2(ay1, by1);
  w = max2(w, T(0));
  h = max2(h, T(0));
  const T overlap = w * h;
  T uni = kMode == kIoF ? area_a : area_a + area_b - overlap;
  uni = max2(uni, eps);
  const T iou = fwd_div(overlap, uni);
  if (kMode != kGIoU) return iou;
  T ew = max2(ax2, bx2) - min2(ax1, bx1);
  T eh = max2(ay2, by2) - min2(ay1, by1);
  ew = max2(ew, T(0));
  eh = max2(eh, T(0));
  T enclose = max2(ew * eh, eps);
  return iou - fwd_div(enclose - uni, enclose);
}

// d min(p, q): the whole gradient goes to the smaller input, half to each on a tie
// (torch.minimum's rule, so gradients equal autograd through the reference even for
// identical boxes). max is the mirror image.
template <typename T>
SSL_HD void grad_min(T p, T q, T g, T& dp, T& dq) {
  if (p < q) {
    dp += g;
  } else if (q < p) {
    dq += g;
  } else {
    dp += g / 2;
    dq += g / 2;
  }
}
template <typename T>
SSL_HD void grad_max(T p, T q, T g, T& dp, T& dq) {
  if (p > q) {
    dp += g;
  } else if (q > p) {
    dq += g;
  } else {
    dp += g / 2;
    dq += g / 2;
  }
}

// Gradient of one pair's overlap w.r.t. both boxes given the upstream gradient g.
// clamp(min=c) passes the gradient where its input is >= c, as torch.clamp does.
// a, b: (x1, y1, x2, y2); da, db are accumulated into (+=).
template <int kMode, typename T>
SSL_HD void pair_backward(const T* a, const T* b, T g, T eps, T* da, T* db) {
  const T ax1 = a[0], ay1 = a[1], ax2 = a[2], ay2 = a[3];
  const T bx1 = b[0], by1 = b[1], bx2 = b[2], by2 = b[3];
  const T w = min2(ax2, bx2) - max2(ax1, bx1);
  const T h = min2(ay2, by2) - max2(ay1, by1);
  const T wc = max2(w, T(0)), hc = max2(h, T(0));
  const T overlap = wc * hc;
  const T area_a = box_area(ax1, ay1, ax2, ay2);
  const T area_b = box_area(bx1, by1, bx2, by2);
  const T uni = kMode == kIoF ? area_a : area_a + area_b - overlap;
  const T uni_c = max2(uni, eps);

  T g_overlap = g / uni_c;
  T g_uni_c = -g * overlap / (uni_c * uni_c);
  T ew = 0, eh = 0, ewc = 0, ehc = 0, g_enc = 0;
  if (kMode == kGIoU) {
    ew = max2(ax2, bx2) - min2(ax1, bx1);
    eh = max2(ay2, by2) - min2(ay1, by1);
    ewc = max2(ew, T(0));
    ehc = max2(eh, T(0));
    const T enclose = ewc * ehc;
    const T enclose_c = max2(enclose, eps);
    // giou = iou - 1 + union / E
    g_uni_c += g / enclose_c;
    g_enc = enclose >= eps ? -g * uni_c / (enclose_c * enclose_c) : T(0);
  }
  const T g_uni = uni >= eps ? g_uni_c : T(0);
  T g_area_a = g_uni, g_area_b = T(0);
  if (kMode != kIoF) {
    g_area_b = g_uni;
    g_overlap -= g_uni;
  }
  // overlap = wc * hc, each clamped at 0.
  const T g_w = w >= T(0) ? g_overlap * hc : T(0);
  const T g_h = h >= T(0) ? g_overlap * wc : T(0);
  grad_min(ax2, bx2, g_w, da[2], db[2]);
  grad_max(ax1, bx1, -g_w, da[0], db[0]);
  grad_min(ay2, by2, g_h, da[3], db[3]);
  grad_max(ay1, by1, -g_h, da[1], db[1]);
  if (kMode == kGIoU) {
    const T g_ew = ew >= T(0) ? g_enc * ehc : T(0);
    const T g_eh = eh >= T(0) ? g_enc * ewc : T(0);
    grad_max(ax2, bx2, g_ew, da[2], db[2]);
    grad_min(ax1, bx1, -g_ew, da[0], db[0]);
    grad_max(ay2, by2, g_eh, da[3], db[3]);
    grad_min(ay1, by1, -g_eh, da[1], db[1]);
  }
  // area = (x2 - x1) * (y2 - y1)
  da[0] -= g_area_a * (ay2 - ay1);
  da[2] += g_area_a * (ay2 - ay1);
  da[1] -= g_area_a * (ax2 - ax1);
  da[3] += g_area_a * (ax2 - ax1);
  db[0] -= g_area_b * (by2 - by1);
  db[2] += g_area_b * (by2 - by1);
  db[1] -= g_area_b * (bx2 - bx1);
  db[3] += g_area_b * (bx2 - bx1);
}

}  // namespace iou2d
}  // namespace ssl_det
