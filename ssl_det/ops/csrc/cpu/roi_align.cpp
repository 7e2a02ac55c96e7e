// RoIAlign with average pooling on the CPU, forward and backward, with mmcv 2.1's maths.
//
// Semantics (those of mmcv.ops.roi_align's CPU kernel, operation for operation, so that the
// forward is bitwise mmcv's and the backward adds the same terms in the same order):
//   * spatial_scale is rounded to float32 first (mmcv passes it as a C float);
//   * a RoI (b, x1, y1, x2, y2) starts at x1 * scale - off, off = 0.5 when aligned else 0;
//     with aligned=False its width and height are raised to at least 1, with aligned=True a
//     negative size is an error;
//   * a bin of a (PH, PW) grid averages grid_h x grid_w bilinear samples, grid = the
//     sampling ratio if > 0, else ceil(bin size) (computed in float32, as mmcv's ceilf);
//     an empty grid gives 0;
//   * a sample with y < -1, y > H, x < -1 or x > W contributes 0; otherwise coordinates
//     below 0 are raised to 0 and those at or past the last pixel are clamped onto it.
// The bilinear taps are separable: per RoI, one table of (low, high, weights) along y for the
// PH x grid_h sample rows and one along x, shared by all channels.
//
// Two layouts, picked by the amount of work (or forced by `impl`, for tests):
//   * channels-last, the detector's case (RoIs sample the map densely): work goes by tiles,
//     a tile being one image's H x W pixels for a block of channels, transposed pixel-major
//     into a per-thread buffer, so that a sample's 4 taps are 4 contiguous channel vectors
//     and the channel loops vectorise (compiled for AVX2 too, chosen at run time). Forward:
//     a tile computes its channels of all its image's RoIs. Backward: a tile sums all its
//     image's RoIs into the buffer, then writes its block of the gradient once.
//   * planar: mmcv's NCHW walk with per-RoI tables of the valid samples, for a few RoIs on
//     a large map, where the transposes would cost more than they save. Forward: RoIs (x
//     channel blocks when there are few) spread over the threads; backward: each thread
//     owns a range of channels and walks all RoIs.
// Threads never write one element twice: tiles, RoIs and channel ranges own disjoint parts
// of the output. Each gradient element receives its terms in mmcv's order (RoI, bin, sample,
// tap), so results are deterministic and do not depend on the number of threads (torch's
// intra-op threads, at::parallel_for, split the work in parts of equal sample counts).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops.h"

namespace ssl_det {
namespace {

enum RoiAlignImpl : int64_t { kAuto = 0, kPlanar = 1, kChannelsLast = 2 };

// What one RoI needs, independent of the channel.
template <typename T>
struct RoiGeom {
  int64_t batch;
  T start_h, start_w, bin_h, bin_w;
  int grid_h, grid_w;
  T count;  // forward divisor: max(grid_h * grid_w, 1)
};

// One bilinear tap along an axis: pixels lo and hi with weights w_lo = 1 - frac and
// w_hi = frac; invalid when the sample lies outside [-1, size].
template <typename T>
struct Tap {
  int64_t lo, hi;
  T w_lo, w_hi;
  bool valid;
};

template <typename T>
Tap<T> make_tap(T v, int64_t size) {
  Tap<T> t{0, 0, T(0), T(0), false};
  if (v < T(-1) || v > static_cast<T>(size)) return t;
  if (v <= T(0)) v = T(0);
  int64_t lo = static_cast<int64_t>(v);
  int64_t hi;
  if (lo >= size - 1) {
    lo = hi = size - 1;
    v = static_cast<T>(lo);
  } else {
    hi = lo + 1;
  }
  t.lo = lo;
  t.hi = hi;
  t.w_hi = v - static_cast<T>(lo);
  t.w_lo = T(1) - t.w_hi;
  t.valid = true;
  return t;
}

// Coordinate of sample i of bin `bin` (mmcv's expression and evaluation order).
template <typename T>
inline T sample_coord(T start, int64_t bin, T bin_size, int i, int grid) {
  return start + static_cast<T>(bin) * bin_size +
         static_cast<T>(i + .5f) * bin_size / static_cast<T>(grid);
}

// The taps of all sample rows (PH * grid_h) and columns (PW * grid_w) of one RoI.
template <typename T>
void make_taps(const RoiGeom<T>& g, int64_t ph, int64_t pw, int64_t height, int64_t width,
               std::vector<Tap<T>>& ytaps, std::vector<Tap<T>>& xtaps) {
  ytaps.resize(ph * g.grid_h);
  xtaps.resize(pw * g.grid_w);
  for (int64_t p = 0; p < ph; ++p)
    for (int i = 0; i < g.grid_h; ++i)
      ytaps[p * g.grid_h + i] = make_tap(sample_coord(g.start_h, p, g.bin_h, i, g.grid_h), height);
  for (int64_t p = 0; p < pw; ++p)
    for (int i = 0; i < g.grid_w; ++i)
      xtaps[p * g.grid_w + i] = make_tap(sample_coord(g.start_w, p, g.bin_w, i, g.grid_w), width);
}

// Adaptive grid size along one axis: ceil of the bin size, in float32 like mmcv's ceilf.
template <typename T>
int grid_size(T bin_size, int64_t sampling_ratio) {
  if (sampling_ratio > 0) return static_cast<int>(sampling_ratio);
  const float g = std::ceil(static_cast<float>(bin_size));
  return g > 0.f ? static_cast<int>(g) : 0;
}

// Geometry of every RoI, checking what would otherwise read out of bounds or loop forever.
template <typename T>
std::vector<RoiGeom<T>> make_geoms(const T* rois, int64_t k, int64_t batch, double scale_d,
                                   int64_t ph, int64_t pw, int64_t sampling_ratio,
                                   bool aligned) {
  const T scale = static_cast<T>(static_cast<float>(scale_d));
  const T offset = aligned ? T(0.5) : T(0);
  TORCH_CHECK_VALUE(sampling_ratio <= (1 << 16), "roi_align: sampling_ratio ", sampling_ratio,
                    " is too large");
  std::vector<RoiGeom<T>> geoms(k);
  for (int64_t n = 0; n < k; ++n) {
    const T* r = rois + 5 * n;
    TORCH_CHECK_VALUE(r[0] > T(-1) && r[0] < static_cast<T>(batch), "roi_align: rois[", n,
                      ", 0] = ", r[0], " is not a batch index of the input (", batch,
                      " images)");
    RoiGeom<T>& g = geoms[n];
    g.batch = static_cast<int64_t>(r[0]);
    g.start_w = r[1] * scale - offset;
    g.start_h = r[2] * scale - offset;
    const T end_w = r[3] * scale - offset;
    const T end_h = r[4] * scale - offset;
    TORCH_CHECK_VALUE(std::isfinite(g.start_w) && std::isfinite(g.start_h) &&
                          std::isfinite(end_w) && std::isfinite(end_h),
                      "roi_align: rois[", n, "] has a non-finite coordinate");
    T roi_w = end_w - g.start_w;
    T roi_h = end_h - g.start_h;
    if (aligned) {
      TORCH_CHECK_VALUE(roi_w >= 0 && roi_h >= 0, "roi_align: rois[", n,
                        "] has x2 < x1 or y2 < y1, which aligned=True does not allow");
    } else {
      roi_w = std::max(roi_w, T(1));
      roi_h = std::max(roi_h, T(1));
    }
    g.bin_h = roi_h / static_cast<T>(ph);
    g.bin_w = roi_w / static_cast<T>(pw);
    TORCH_CHECK_VALUE(sampling_ratio > 0 || (g.bin_h < T(1 << 20) && g.bin_w < T(1 << 20)),
                      "roi_align: rois[", n, "] is too large for adaptive sampling");
    g.grid_h = grid_size(g.bin_h, sampling_ratio);
    g.grid_w = grid_size(g.bin_w, sampling_ratio);
    g.count = static_cast<T>(std::max<int64_t>(int64_t(g.grid_h) * g.grid_w, 1));
  }
  return geoms;
}

// Samples of one RoI (all bins), the unit of work used to balance threads.
template <typename T>
int64_t roi_cost(const RoiGeom<T>& g, int64_t bins) {
  return bins * (1 + static_cast<int64_t>(g.grid_h) * g.grid_w);
}

// Below this many sample x channel steps a call runs on the calling thread: waking the
// other threads would cost more than it saves.
constexpr int64_t kSerialWork = int64_t(1) << 16;

// Runs f(begin, end) on parts of [0, n) of about equal cost, in parallel; prefix[i] is the
// cost (sample x channel steps) of items [0, i) (n + 1 entries).
template <typename F>
void parallel_by_cost(const std::vector<int64_t>& prefix, F&& f) {
  const int64_t n = static_cast<int64_t>(prefix.size()) - 1;
  if (n <= 0) return;
  if (prefix.back() < kSerialWork || at::get_num_threads() == 1 || at::in_parallel_region()) {
    f(0, n);
    return;
  }
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(n, at::get_num_threads()));
  const int64_t total = prefix.back();
  auto bound = [&](int64_t p) -> int64_t {
    if (p >= parts) return n;
    const int64_t target = total / parts * p + (total % parts) * p / parts;
    return std::lower_bound(prefix.begin(), prefix.end(), target) - prefix.begin();
  };
  at::parallel_for(0, parts, 1, [&](int64_t pb, int64_t pe) {
    for (int64_t p = pb; p < pe; ++p) {
      const int64_t b = bound(p), e = bound(p + 1);
      if (b < e) f(b, e);
    }
  });
}

// ---------------------------------------------------------------------------------------
// Channels-last kernels: the inner loops run over contiguous channels. The per-RoI bodies
// are compiled twice, for the baseline ISA and for AVX2 (picked at run time); AVX2 without
// FMA, so that every lane performs mmcv's scalar operations and roundings.

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define SSL_DET_RA_AVX2 1
#define SSL_DET_RA_INLINE inline __attribute__((always_inline))
#define SSL_DET_RA_TARGET_AVX2 __attribute__((target("avx2")))
bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#else
#define SSL_DET_RA_AVX2 0
#define SSL_DET_RA_INLINE inline
bool cpu_has_avx2() { return false; }
#endif

// A pixel-major tile: channel c of pixel (y, x) at base[(y * width + x) * stride + c],
// for the nc channels of the block.
struct ChannelsLastView {
  int64_t width, stride, nc;
};

// Forward of one RoI over a block of nc channels: o[c * bins + bin] (o at channel c0);
// `acc` has room for nc sums.
template <typename T>
SSL_DET_RA_INLINE void forward_roi_body(const T* base, const RoiGeom<T>& g,
                                        const Tap<T>* ytaps, const Tap<T>* xtaps, int64_t ph,
                                        int64_t pw, ChannelsLastView v, T* __restrict acc,
                                        T* o) {
  const int64_t bins = ph * pw, nc = v.nc, row = v.width * v.stride;
  for (int64_t py = 0; py < ph; ++py) {
    for (int64_t px = 0; px < pw; ++px) {
      for (int64_t c = 0; c < nc; ++c) acc[c] = T(0);
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const Tap<T>& ty = ytaps[py * g.grid_h + iy];
        if (!ty.valid) continue;
        const T* row_lo = base + ty.lo * row;
        const T* row_hi = base + ty.hi * row;
        for (int ix = 0; ix < g.grid_w; ++ix) {
          const Tap<T>& tx = xtaps[px * g.grid_w + ix];
          if (!tx.valid) continue;
          const int64_t xl = tx.lo * v.stride, xh = tx.hi * v.stride;
          const T* __restrict p1 = row_lo + xl;
          const T* __restrict p2 = row_lo + xh;
          const T* __restrict p3 = row_hi + xl;
          const T* __restrict p4 = row_hi + xh;
          const T w1 = ty.w_lo * tx.w_lo, w2 = ty.w_lo * tx.w_hi;
          const T w3 = ty.w_hi * tx.w_lo, w4 = ty.w_hi * tx.w_hi;
          // mmcv's bracketing: ((w1 v1 + w2 v2) + w3 v3) + w4 v4, added to the bin's sum
          // in sample order.
          for (int64_t c = 0; c < nc; ++c)
            acc[c] += w1 * p1[c] + w2 * p2[c] + w3 * p3[c] + w4 * p4[c];
        }
      }
      T* ob = o + py * pw + px;
      for (int64_t c = 0; c < nc; ++c) ob[c * bins] = acc[c] / g.count;
    }
  }
}

// dst[c] += g[c] * w / count: mmcv's bracketing. When count is a power of two, x / count is
// exactly x * (1 / count), which saves the division.
template <typename T, bool kPow2>
SSL_DET_RA_INLINE void scatter_tap(T* __restrict dst, const T* __restrict gb, T w, T count,
                                   T inv_count, int64_t nc) {
  if (kPow2) {
    for (int64_t c = 0; c < nc; ++c) dst[c] += gb[c] * w * inv_count;
  } else {
    for (int64_t c = 0; c < nc; ++c) dst[c] += gb[c] * w / count;
  }
}

// The same for four distinct pixels at once.
template <typename T, bool kPow2>
SSL_DET_RA_INLINE void scatter_taps4(T* __restrict d1, T* __restrict d2, T* __restrict d3,
                                     T* __restrict d4, const T* __restrict gb, T w1, T w2, T w3,
                                     T w4, T count, T inv_count, int64_t nc) {
  if (kPow2) {
    for (int64_t c = 0; c < nc; ++c) {
      const T gc = gb[c];
      d1[c] += gc * w1 * inv_count;
      d2[c] += gc * w2 * inv_count;
      d3[c] += gc * w3 * inv_count;
      d4[c] += gc * w4 * inv_count;
    }
  } else {
    for (int64_t c = 0; c < nc; ++c) {
      const T gc = gb[c];
      d1[c] += gc * w1 / count;
      d2[c] += gc * w2 / count;
      d3[c] += gc * w3 / count;
      d4[c] += gc * w4 / count;
    }
  }
}

// Backward of one RoI over a block of nc channels; gbuf holds its grad_output bin-major
// (gbuf[bin * nc + c]); base is the gradient at channel c0 of the RoI's image.
template <typename T, bool kPow2>
SSL_DET_RA_INLINE void backward_roi_body(T* base, const RoiGeom<T>& g, const Tap<T>* ytaps,
                                         const Tap<T>* xtaps, int64_t ph, int64_t pw,
                                         ChannelsLastView v, const T* gbuf) {
  const int64_t nc = v.nc, row = v.width * v.stride;
  const T count = static_cast<T>(int64_t(g.grid_h) * g.grid_w);
  const T inv_count = T(1) / count;
  for (int64_t py = 0; py < ph; ++py) {
    for (int64_t px = 0; px < pw; ++px) {
      const T* gb = gbuf + (py * pw + px) * nc;
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const Tap<T>& ty = ytaps[py * g.grid_h + iy];
        if (!ty.valid) continue;
        T* row_lo = base + ty.lo * row;
        T* row_hi = base + ty.hi * row;
        for (int ix = 0; ix < g.grid_w; ++ix) {
          const Tap<T>& tx = xtaps[px * g.grid_w + ix];
          if (!tx.valid) continue;
          const int64_t xl = tx.lo * v.stride, xh = tx.hi * v.stride;
          const T w1 = ty.w_lo * tx.w_lo, w2 = ty.w_lo * tx.w_hi;
          const T w3 = ty.w_hi * tx.w_lo, w4 = ty.w_hi * tx.w_hi;
          if (ty.lo != ty.hi && tx.lo != tx.hi) {
            // Four distinct pixels: one pass.
            scatter_taps4<T, kPow2>(row_lo + xl, row_lo + xh, row_hi + xl, row_hi + xh, gb, w1,
                                    w2, w3, w4, count, inv_count, nc);
          } else {
            // At the border taps share a pixel: one pass per tap, in mmcv's order.
            scatter_tap<T, kPow2>(row_lo + xl, gb, w1, count, inv_count, nc);
            scatter_tap<T, kPow2>(row_lo + xh, gb, w2, count, inv_count, nc);
            scatter_tap<T, kPow2>(row_hi + xl, gb, w3, count, inv_count, nc);
            scatter_tap<T, kPow2>(row_hi + xh, gb, w4, count, inv_count, nc);
          }
        }
      }
    }
  }
}

template <typename T>
void forward_roi_base(const T* base, const RoiGeom<T>& g, const Tap<T>* ytaps,
                      const Tap<T>* xtaps, int64_t ph, int64_t pw, ChannelsLastView v, T* acc,
                      T* o) {
  forward_roi_body(base, g, ytaps, xtaps, ph, pw, v, acc, o);
}

template <typename T>
void backward_roi_base(T* base, const RoiGeom<T>& g, const Tap<T>* ytaps, const Tap<T>* xtaps,
                       int64_t ph, int64_t pw, ChannelsLastView v, const T* gbuf, bool pow2) {
  if (pow2) {
    backward_roi_body<T, true>(base, g, ytaps, xtaps, ph, pw, v, gbuf);
  } else {
    backward_roi_body<T, false>(base, g, ytaps, xtaps, ph, pw, v, gbuf);
  }
}

#if SSL_DET_RA_AVX2
template <typename T>
SSL_DET_RA_TARGET_AVX2 void forward_roi_avx2(const T* base, const RoiGeom<T>& g,
                                             const Tap<T>* ytaps, const Tap<T>* xtaps,
                                             int64_t ph, int64_t pw, ChannelsLastView v,
                                             T* acc, T* o) {
  forward_roi_body(base, g, ytaps, xtaps, ph, pw, v, acc, o);
}

template <typename T>
SSL_DET_RA_TARGET_AVX2 void backward_roi_avx2(T* base, const RoiGeom<T>& g,
                                              const Tap<T>* ytaps, const Tap<T>* xtaps,
                                              int64_t ph, int64_t pw, ChannelsLastView v,
                                              const T* gbuf, bool pow2) {
  if (pow2) {
    backward_roi_body<T, true>(base, g, ytaps, xtaps, ph, pw, v, gbuf);
  } else {
    backward_roi_body<T, false>(base, g, ytaps, xtaps, ph, pw, v, gbuf);
  }
}
#endif

template <typename T>
void forward_roi(const T* base, const RoiGeom<T>& g, const Tap<T>* ytaps, const Tap<T>* xtaps,
                 int64_t ph, int64_t pw, ChannelsLastView v, T* acc, T* o) {
#if SSL_DET_RA_AVX2
  if (cpu_has_avx2()) return forward_roi_avx2(base, g, ytaps, xtaps, ph, pw, v, acc, o);
#endif
  forward_roi_base(base, g, ytaps, xtaps, ph, pw, v, acc, o);
}

template <typename T>
void backward_roi(T* base, const RoiGeom<T>& g, const Tap<T>* ytaps, const Tap<T>* xtaps,
                  int64_t ph, int64_t pw, ChannelsLastView v, const T* gbuf, bool pow2) {
#if SSL_DET_RA_AVX2
  if (cpu_has_avx2()) return backward_roi_avx2(base, g, ytaps, xtaps, ph, pw, v, gbuf, pow2);
#endif
  backward_roi_base(base, g, ytaps, xtaps, ph, pw, v, gbuf, pow2);
}

// The RoIs of each image, in their original order (a stable bucket sort): an image's
// gradient only receives terms from its own RoIs, so handling the images one by one keeps
// every element's order of summation.
template <typename T>
std::vector<std::vector<int64_t>> rois_by_image(const std::vector<RoiGeom<T>>& geoms,
                                                int64_t batch) {
  std::vector<std::vector<int64_t>> by_image(batch);
  for (int64_t n = 0; n < static_cast<int64_t>(geoms.size()); ++n)
    by_image[geoms[n].batch].push_back(n);
  return by_image;
}

// Channels per tile: a tile (one image's H x W pixels x block channels) of at most ~8 MB,
// at most 64 channels, and enough tiles for every thread.
int64_t tile_channels(int64_t batch, int64_t channels, int64_t plane, int64_t elem_size) {
  int64_t block = 64;
  while (block > 8 && plane * block * elem_size > (int64_t(8) << 20)) block /= 2;
  const int64_t threads = at::get_num_threads();
  while (block > 8 && batch * ((channels + block - 1) / block) < 2 * threads) block /= 2;
  return std::max<int64_t>(1, std::min(block, channels));
}

// The channels-last path works tile by tile: a tile is channels [c0, c0 + nc) of one image,
// held pixel-major (tile[p * nc + c]) in a per-thread buffer, so that no transposed copy of
// the whole map is allocated. Tiles are independent (disjoint outputs), so they are spread
// over the threads in parts of equal work.
template <typename T, typename F>
void for_each_tile(const std::vector<std::vector<int64_t>>& by_image,
                   const std::vector<RoiGeom<T>>& geoms, int64_t channels, int64_t block,
                   int64_t plane, int64_t bins, bool skip_empty, F&& f) {
  const int64_t batch = static_cast<int64_t>(by_image.size());
  const int64_t nblocks = (channels + block - 1) / block;
  std::vector<int64_t> items, prefix(1, 0);
  for (int64_t b = 0; b < batch; ++b) {
    if (skip_empty && by_image[b].empty()) continue;
    int64_t cost = plane;
    for (int64_t n : by_image[b]) cost += roi_cost(geoms[n], bins);
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      items.push_back(b * nblocks + blk);
      prefix.push_back(prefix.back() + cost * std::min(block, channels - blk * block));
    }
  }
  parallel_by_cost(prefix, [&](int64_t begin, int64_t end) {
    std::vector<T> tile;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = items[i] / nblocks, c0 = (items[i] % nblocks) * block;
      const int64_t nc = std::min(block, channels - c0);
      tile.resize(plane * nc);
      f(b, c0, nc, tile.data());
    }
  });
}

// in (N, C, H, W) -> out (K, C, PH, PW).
template <typename T>
void forward_channels_last(const T* in, const std::vector<RoiGeom<T>>& geoms, int64_t batch,
                           int64_t channels, int64_t height, int64_t width, int64_t ph,
                           int64_t pw, T* out) {
  const int64_t bins = ph * pw, plane = height * width;
  const int64_t block = tile_channels(batch, channels, plane, sizeof(T));
  const auto by_image = rois_by_image(geoms, batch);
  for_each_tile(by_image, geoms, channels, block, plane, bins, /*skip_empty=*/true,
                [&](int64_t b, int64_t c0, int64_t nc, T* tile) {
    // Transpose the tile in by 64-pixel strips (reads contiguous along each channel).
    const T* src = in + (b * channels + c0) * plane;
    for (int64_t p0 = 0; p0 < plane; p0 += 64) {
      const int64_t p1 = std::min(plane, p0 + 64);
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t p = p0; p < p1; ++p) tile[p * nc + c] = src[c * plane + p];
    }
    std::vector<Tap<T>> ytaps, xtaps;
    std::vector<T> acc(nc);
    for (int64_t n : by_image[b]) {
      const RoiGeom<T>& g = geoms[n];
      make_taps(g, ph, pw, height, width, ytaps, xtaps);
      forward_roi(tile, g, ytaps.data(), xtaps.data(), ph, pw, ChannelsLastView{width, nc, nc},
                  acc.data(), out + (n * channels + c0) * bins);
    }
  });
}

// grad_out (K, C, PH, PW) -> grad (N, C, H, W); every element of grad is written.
template <typename T>
void backward_channels_last(const T* grad_out, const std::vector<RoiGeom<T>>& geoms,
                            int64_t batch, int64_t channels, int64_t height, int64_t width,
                            int64_t ph, int64_t pw, T* grad) {
  const int64_t bins = ph * pw, plane = height * width;
  const int64_t block = tile_channels(batch, channels, plane, sizeof(T));
  const auto by_image = rois_by_image(geoms, batch);
  for_each_tile(by_image, geoms, channels, block, plane, bins, /*skip_empty=*/false,
                [&](int64_t b, int64_t c0, int64_t nc, T* tile) {
    T* dst = grad + (b * channels + c0) * plane;
    if (by_image[b].empty()) {
      std::fill(dst, dst + nc * plane, T(0));
      return;
    }
    std::fill(tile, tile + nc * plane, T(0));
    std::vector<Tap<T>> ytaps, xtaps;
    std::vector<T> gbuf(bins * nc);  // the RoI's grad_output block, bin-major
    for (int64_t n : by_image[b]) {
      const RoiGeom<T>& g = geoms[n];
      if (g.grid_h == 0 || g.grid_w == 0) continue;
      make_taps(g, ph, pw, height, width, ytaps, xtaps);
      const T* go = grad_out + (n * channels + c0) * bins;
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t k = 0; k < bins; ++k) gbuf[k * nc + c] = go[c * bins + k];
      const int64_t cnt = static_cast<int64_t>(g.grid_h) * g.grid_w;
      backward_roi(tile, g, ytaps.data(), xtaps.data(), ph, pw, ChannelsLastView{width, nc, nc},
                   gbuf.data(), (cnt & (cnt - 1)) == 0);
    }
    for (int64_t p0 = 0; p0 < plane; p0 += 64) {
      const int64_t p1 = std::min(plane, p0 + 64);
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t p = p0; p < p1; ++p) dst[c * plane + p] = tile[p * nc + c];
    }
  });
}

// ---------------------------------------------------------------------------------------
// Planar (NCHW) kernels: per RoI, a table of its valid samples, then one channel at a time.

template <typename T>
struct Sample {
  int64_t p1, p2, p3, p4;  // offsets in an H x W plane
  T w1, w2, w3, w4;
};

// The valid samples of one RoI, bin by bin; bin b owns samples [start[b], start[b + 1]).
template <typename T>
void make_samples(const RoiGeom<T>& g, int64_t ph, int64_t pw, int64_t height, int64_t width,
                  std::vector<Tap<T>>& ytaps, std::vector<Tap<T>>& xtaps,
                  std::vector<Sample<T>>& samples, std::vector<int64_t>& start) {
  make_taps(g, ph, pw, height, width, ytaps, xtaps);
  samples.clear();
  start.assign(1, 0);
  for (int64_t py = 0; py < ph; ++py) {
    for (int64_t px = 0; px < pw; ++px) {
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const Tap<T>& ty = ytaps[py * g.grid_h + iy];
        if (!ty.valid) continue;
        for (int ix = 0; ix < g.grid_w; ++ix) {
          const Tap<T>& tx = xtaps[px * g.grid_w + ix];
          if (!tx.valid) continue;
          samples.push_back({ty.lo * width + tx.lo, ty.lo * width + tx.hi,
                             ty.hi * width + tx.lo, ty.hi * width + tx.hi, ty.w_lo * tx.w_lo,
                             ty.w_lo * tx.w_hi, ty.w_hi * tx.w_lo, ty.w_hi * tx.w_hi});
        }
      }
      start.push_back(static_cast<int64_t>(samples.size()));
    }
  }
}

template <typename T>
void forward_planar(const T* in, const std::vector<RoiGeom<T>>& geoms, int64_t channels,
                    int64_t height, int64_t width, int64_t ph, int64_t pw, T* out) {
  const int64_t k = static_cast<int64_t>(geoms.size());
  const int64_t bins = ph * pw, plane = height * width;
  const int64_t threads = at::get_num_threads();
  int64_t nblocks = 1;
  if (k < 4 * threads) nblocks = std::min<int64_t>((4 * threads + k - 1) / k, channels);
  nblocks = std::max<int64_t>(nblocks, 1);
  const int64_t block = (channels + nblocks - 1) / nblocks;
  std::vector<int64_t> prefix(k * nblocks + 1, 0);
  for (int64_t i = 0; i < k * nblocks; ++i) {
    const int64_t nc = std::max<int64_t>(0, std::min(block, channels - (i % nblocks) * block));
    prefix[i + 1] = prefix[i] + roi_cost(geoms[i / nblocks], bins) * nc;
  }
  parallel_by_cost(prefix, [&](int64_t begin, int64_t end) {
    std::vector<Tap<T>> ytaps, xtaps;
    std::vector<Sample<T>> samples;
    std::vector<int64_t> start;
    int64_t tabled = -1;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / nblocks;
      const int64_t c0 = (item % nblocks) * block;
      const int64_t c1 = std::min(channels, c0 + block);
      const RoiGeom<T>& g = geoms[n];
      if (tabled != n) {
        make_samples(g, ph, pw, height, width, ytaps, xtaps, samples, start);
        tabled = n;
      }
      for (int64_t c = c0; c < c1; ++c) {
        const T* src = in + (g.batch * channels + c) * plane;
        T* o = out + (n * channels + c) * bins;
        for (int64_t b = 0; b < bins; ++b) {
          T acc = T(0);
          for (int64_t s = start[b]; s < start[b + 1]; ++s) {
            const Sample<T>& sp = samples[s];
            acc += sp.w1 * src[sp.p1] + sp.w2 * src[sp.p2] + sp.w3 * src[sp.p3] +
                   sp.w4 * src[sp.p4];
          }
          o[b] = acc / g.count;
        }
      }
    }
  });
}

// grad (N, C, H, W), zero on entry.
template <typename T>
void backward_planar(const T* grad_out, const std::vector<RoiGeom<T>>& geoms, int64_t channels,
                     int64_t height, int64_t width, int64_t ph, int64_t pw, T* grad) {
  const int64_t k = static_cast<int64_t>(geoms.size());
  const int64_t bins = ph * pw, plane = height * width;
  int64_t per_channel = 1;
  for (const auto& g : geoms) per_channel += roi_cost(g, bins);
  const int64_t grain = std::max<int64_t>(1, kSerialWork / per_channel);
  at::parallel_for(0, channels, grain, [&](int64_t c0, int64_t c1) {
    std::vector<Tap<T>> ytaps, xtaps;
    std::vector<Sample<T>> samples;
    std::vector<int64_t> start;
    for (int64_t n = 0; n < k; ++n) {
      const RoiGeom<T>& g = geoms[n];
      if (g.grid_h == 0 || g.grid_w == 0) continue;
      make_samples(g, ph, pw, height, width, ytaps, xtaps, samples, start);
      const T count = static_cast<T>(int64_t(g.grid_h) * g.grid_w);
      for (int64_t c = c0; c < c1; ++c) {
        T* dst = grad + (g.batch * channels + c) * plane;
        const T* go = grad_out + (n * channels + c) * bins;
        for (int64_t b = 0; b < bins; ++b) {
          const T gv = go[b];
          for (int64_t s = start[b]; s < start[b + 1]; ++s) {
            const Sample<T>& sp = samples[s];
            dst[sp.p1] += gv * sp.w1 / count;
            dst[sp.p2] += gv * sp.w2 / count;
            dst[sp.p3] += gv * sp.w3 / count;
            dst[sp.p4] += gv * sp.w4 / count;
          }
        }
      }
    }
  });
}

// Channels-last pays a transpose of each image's features (and, backward, of its gradient)
// and then runs about 6x faster per sample than the planar walk; measured, it wins once the
// RoIs take a quarter of a sample per pixel of the map.
template <typename T>
bool use_channels_last(int64_t impl, const std::vector<RoiGeom<T>>& geoms, int64_t batch,
                       int64_t height, int64_t width, int64_t bins) {
  if (impl == kPlanar) return false;
  if (impl == kChannelsLast) return true;
  int64_t samples = 0;
  for (const auto& g : geoms) samples += bins * g.grid_h * int64_t(g.grid_w);
  return 4 * samples >= batch * height * width;
}

void check_rois(const at::Tensor& rois, at::ScalarType dtype, int64_t ph, int64_t pw,
                int64_t impl) {
  TORCH_CHECK(rois.device().is_cpu(),
              "roi_align: ssl_det has a CPU kernel only; ssl_det.ops.roi_align sends CUDA "
              "tensors to mmcv.ops.roi_align");
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, "roi_align: rois must be (K, 5)");
  TORCH_CHECK(rois.scalar_type() == dtype, "roi_align: rois and features differ in dtype");
  TORCH_CHECK(ph > 0 && pw > 0, "roi_align: output size must be positive");
  TORCH_CHECK(impl >= kAuto && impl <= kChannelsLast, "roi_align: unknown impl code ", impl);
}

}  // namespace

at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois_in,
                                 int64_t pooled_h, int64_t pooled_w, double spatial_scale,
                                 int64_t sampling_ratio, bool aligned, int64_t impl) {
  TORCH_CHECK(input.device().is_cpu(),
              "roi_align: ssl_det has a CPU kernel only; ssl_det.ops.roi_align sends CUDA "
              "tensors to mmcv.ops.roi_align");
  TORCH_CHECK(input.dim() == 4, "roi_align: input must be (N, C, H, W)");
  check_rois(rois_in, input.scalar_type(), pooled_h, pooled_w, impl);
  const at::Tensor rois = rois_in.contiguous();
  const int64_t batch = input.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3), k = rois.size(0);
  at::Tensor out = at::empty({k, channels, pooled_h, pooled_w}, input.options());
  if (k == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "roi_align_forward_cpu", [&] {
    const auto geoms = make_geoms<scalar_t>(rois.data_ptr<scalar_t>(), k, batch, spatial_scale,
                                            pooled_h, pooled_w, sampling_ratio, aligned);
    if (channels == 0) return;
    if (height == 0 || width == 0) {  // every sample lies outside the map
      out.zero_();
      return;
    }
    const at::Tensor nchw = input.contiguous();
    if (use_channels_last(impl, geoms, batch, height, width, pooled_h * pooled_w)) {
      forward_channels_last(nchw.data_ptr<scalar_t>(), geoms, batch, channels, height, width,
                            pooled_h, pooled_w, out.data_ptr<scalar_t>());
    } else {
      forward_planar(nchw.data_ptr<scalar_t>(), geoms, channels, height, width, pooled_h,
                     pooled_w, out.data_ptr<scalar_t>());
    }
  });
  return out;
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& rois_in,
                                  int64_t batch, int64_t channels, int64_t height,
                                  int64_t width, double spatial_scale, int64_t sampling_ratio,
                                  bool aligned, int64_t impl) {
  TORCH_CHECK(grad_out_in.device().is_cpu(),
              "roi_align: ssl_det has a CPU kernel only; ssl_det.ops.roi_align sends CUDA "
              "tensors to mmcv.ops.roi_align");
  TORCH_CHECK(grad_out_in.dim() == 4 && rois_in.dim() == 2 &&
                  grad_out_in.size(0) == rois_in.size(0) && grad_out_in.size(1) == channels,
              "roi_align_backward: grad_output must be (K, C, PH, PW)");
  TORCH_CHECK(batch >= 0 && channels >= 0 && height >= 0 && width >= 0,
              "roi_align_backward: negative input size");
  const int64_t pooled_h = grad_out_in.size(2), pooled_w = grad_out_in.size(3);
  check_rois(rois_in, grad_out_in.scalar_type(), pooled_h, pooled_w, impl);
  const at::Tensor rois = rois_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const int64_t k = rois.size(0);
  const auto options = grad_out.options();
  if (k == 0 || batch * channels * height * width == 0)
    return at::zeros({batch, channels, height, width}, options);
  at::Tensor grad;
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "roi_align_backward_cpu", [&] {
    const auto geoms = make_geoms<scalar_t>(rois.data_ptr<scalar_t>(), k, batch, spatial_scale,
                                            pooled_h, pooled_w, sampling_ratio, aligned);
    if (use_channels_last(impl, geoms, batch, height, width, pooled_h * pooled_w)) {
      grad = at::empty({batch, channels, height, width}, options);
      backward_channels_last(grad_out.data_ptr<scalar_t>(), geoms, batch, channels, height,
                             width, pooled_h, pooled_w, grad.data_ptr<scalar_t>());
    } else {
      grad = at::zeros({batch, channels, height, width}, options);
      backward_planar(grad_out.data_ptr<scalar_t>(), geoms, channels, height, width, pooled_h,
                      pooled_w, grad.data_ptr<scalar_t>());
    }
  });
  return grad;
}

}  // namespace ssl_det
