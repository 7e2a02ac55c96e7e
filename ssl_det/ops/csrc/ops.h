// Declarations of ssl_det's compiled ops, one CPU and (with WITH_CUDA) one CUDA entry point
// per op. pybind.cpp picks the device; the Python API in ssl_det/ops validates arguments
// first, so these only guard against misuse that would read out of bounds.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace ssl_det {

// Integer codes of the 2D overlap modes (kept in sync with ssl_det/ops/iou.py).
enum IouMode : int64_t { kIoU = 0, kIoF = 1, kGIoU = 2 };

// bbox_overlaps: a (N, 4), b (M, 4) xyxy, same dtype and device; returns (N, M) or (N,).
at::Tensor bbox_overlaps_cpu(const at::Tensor& a, const at::Tensor& b, int64_t mode,
                             bool aligned, double eps);
std::tuple<at::Tensor, at::Tensor> bbox_overlaps_backward_cpu(
    const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b, int64_t mode,
    bool aligned, double eps);

// rotated_iou: a (N, 5|7), b (M, 5|7); with_height selects 3D IoU (both 7 columns).
at::Tensor rotated_iou_cpu(const at::Tensor& a, const at::Tensor& b, bool aligned,
                           bool with_height, double eps);

// box_jitter: boxes (N, K>=4), noise (times, N, 4) in the boxes' compute dtype;
// returns (N * times, K), box-major.
at::Tensor box_jitter_cpu(const at::Tensor& boxes, const at::Tensor& noise, double scale);

// jitter_uncertainty: refined (N * times, 4C) box-major, labels (N,) int64 (ignored when
// C == 1); returns (N,) in refined's dtype.
at::Tensor jitter_uncertainty_cpu(const at::Tensor& refined, const at::Tensor& labels,
                                  int64_t times);

// roi_align (average pooling, mmcv's maths): input (N, C, H, W), rois (K, 5) = (batch index,
// x1, y1, x2, y2) in input's dtype; returns (K, C, pooled_h, pooled_w). impl: 0 picks the
// layout by the amount of work, 1 forces the planar (NCHW) kernel, 2 the channels-last one.
// CPU only: ssl_det.ops.roi_align sends CUDA tensors to mmcv.
at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                 int64_t pooled_h, int64_t pooled_w, double spatial_scale,
                                 int64_t sampling_ratio, bool aligned, int64_t impl);
// Gradient w.r.t. the input, (batch, channels, height, width), from grad_output (K, C, PH, PW).
at::Tensor roi_align_backward_cpu(const at::Tensor& grad_output, const at::Tensor& rois,
                                  int64_t batch, int64_t channels, int64_t height,
                                  int64_t width, double spatial_scale, int64_t sampling_ratio,
                                  bool aligned, int64_t impl);

// nms: greedy NMS with mmcv 2.1's CPU results (kept indices in score order); boxes (N, 4)
// xyxy and scores (N,), float32 on the CPU; offset 0 or 1.
at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold,
                   int64_t offset);

#ifdef WITH_CUDA
at::Tensor bbox_overlaps_cuda(const at::Tensor& a, const at::Tensor& b, int64_t mode,
                              bool aligned, double eps);
std::tuple<at::Tensor, at::Tensor> bbox_overlaps_backward_cuda(
    const at::Tensor& grad, const at::Tensor& a, const at::Tensor& b, int64_t mode,
    bool aligned, double eps);
at::Tensor rotated_iou_cuda(const at::Tensor& a, const at::Tensor& b, bool aligned,
                            bool with_height, double eps);
at::Tensor box_jitter_cuda(const at::Tensor& boxes, const at::Tensor& noise, double scale);
at::Tensor jitter_uncertainty_cuda(const at::Tensor& refined, const at::Tensor& labels,
                                   int64_t times);
#endif

}  // namespace ssl_det
