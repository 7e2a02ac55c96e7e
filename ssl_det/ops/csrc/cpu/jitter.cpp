// Soft Teacher's box jitter and the uncertainty of the teacher's refined jittered boxes,
// on the CPU. Both follow mmdet's SoftTeacher.aug_box / compute_uncertainty_with_aug
// operation for operation (see ssl_det/ops/jitter.py for the exact contract), but in one
// pass over all boxes of all images instead of a Python loop of tensor ops per image.
#include <ATen/Parallel.h>

#include <cmath>
#include <limits>

#include "ops.h"

namespace ssl_det {
namespace {

// out[n * times + t, c] = box[n, c] + noise[t, n, c] * (size_c * scale) for the 4 coords,
// size_c = max(width, 1) for x1/x2 and max(height, 1) for y1/y2; extra columns are copied.
// The product is bracketed as mmdet brackets it (offset = randn * (size * frac)), so float32
// results are bitwise those of mmdet for the same noise.
template <typename T>
void jitter_kernel(const T* boxes, const T* noise, int64_t n, int64_t k, int64_t times,
                   T scale, T* out) {
  at::parallel_for(0, n, 512, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T* box = boxes + i * k;
      const T w = std::max(box[2] - box[0], T(1));
      const T h = std::max(box[3] - box[1], T(1));
      const T step[4] = {w * scale, h * scale, w * scale, h * scale};
      for (int64_t t = 0; t < times; ++t) {
        const T* eps = noise + (t * n + i) * 4;
        T* o = out + (i * times + t) * k;
        for (int c = 0; c < 4; ++c) o[c] = box[c] + eps[c] * step[c];
        for (int64_t c = 4; c < k; ++c) o[c] = box[c];
      }
    }
  });
}

// Per box: the label's 4 columns over its `times` rows; mean and unbiased std per coordinate
// (two passes, in double); size from the mean box clamped at 1; result = mean over the 4
// coordinates of std / size. An out-of-range label gives NaN rather than a stray read
// (the Python API rejects such labels before calling).
template <typename T>
void uncertainty_kernel(const T* refined, const int64_t* labels, int64_t n, int64_t k,
                        int64_t times, T* out) {
  const int64_t channels = k / 4;
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t ch = channels == 1 ? 0 : labels[i];
      if (ch < 0 || ch >= channels) {
        out[i] = std::numeric_limits<T>::quiet_NaN();
        continue;
      }
      const T* base = refined + i * times * k + ch * 4;
      double mean[4] = {0, 0, 0, 0}, var[4] = {0, 0, 0, 0};
      for (int64_t t = 0; t < times; ++t)
        for (int c = 0; c < 4; ++c) mean[c] += base[t * k + c];
      for (int c = 0; c < 4; ++c) mean[c] /= times;
      for (int64_t t = 0; t < times; ++t)
        for (int c = 0; c < 4; ++c) {
          const double d = base[t * k + c] - mean[c];
          var[c] += d * d;
        }
      const double w = std::max(mean[2] - mean[0], 1.0);
      const double h = std::max(mean[3] - mean[1], 1.0);
      const double size[4] = {w, h, w, h};
      double sum = 0;
      for (int c = 0; c < 4; ++c) sum += std::sqrt(var[c] / (times - 1)) / size[c];
      out[i] = static_cast<T>(sum / 4);
    }
  });
}

}  // namespace

at::Tensor box_jitter_cpu(const at::Tensor& boxes, const at::Tensor& noise, double scale) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) >= 4, "box_jitter: boxes must be (N, K>=4)");
  TORCH_CHECK(noise.dim() == 3 && noise.size(1) == boxes.size(0) && noise.size(2) == 4,
              "box_jitter: noise must be (times, N, 4)");
  TORCH_CHECK(boxes.is_contiguous() && noise.is_contiguous(), "box_jitter: not contiguous");
  TORCH_CHECK(boxes.scalar_type() == noise.scalar_type(), "box_jitter: dtypes differ");
  const int64_t n = boxes.size(0), k = boxes.size(1), times = noise.size(0);
  at::Tensor out = at::empty({n * times, k}, boxes.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "box_jitter_cpu", [&] {
    jitter_kernel<scalar_t>(boxes.data_ptr<scalar_t>(), noise.data_ptr<scalar_t>(), n, k,
                            times, static_cast<scalar_t>(scale), out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor jitter_uncertainty_cpu(const at::Tensor& refined, const at::Tensor& labels,
                                  int64_t times) {
  TORCH_CHECK(refined.dim() == 2 && refined.size(1) % 4 == 0 && refined.size(1) > 0,
              "jitter_uncertainty: refined must be (N * times, 4C)");
  TORCH_CHECK(times >= 2 && refined.size(0) % times == 0,
              "jitter_uncertainty: rows must be a multiple of times >= 2");
  TORCH_CHECK(refined.is_contiguous() && labels.is_contiguous(),
              "jitter_uncertainty: not contiguous");
  const int64_t n = refined.size(0) / times, k = refined.size(1);
  TORCH_CHECK(k == 4 || (labels.scalar_type() == at::kLong && labels.numel() == n),
              "jitter_uncertainty: labels must be (N,) int64");
  at::Tensor out = at::empty({n}, refined.options());
  if (n == 0) return out;
  const int64_t* lab = k == 4 ? nullptr : labels.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(refined.scalar_type(), "jitter_uncertainty_cpu", [&] {
    uncertainty_kernel<scalar_t>(refined.data_ptr<scalar_t>(), lab, n, k, times,
                                 out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace ssl_det
