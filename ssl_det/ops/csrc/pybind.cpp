// The ssl_det._ext module: one entry point per op that sends tensors to the CPU or CUDA
// implementation by device. Argument checking for users lives in ssl_det/ops (Python);
// here a CUDA tensor reaching a build without CUDA gets an error that says how to rebuild.
#include <torch/extension.h>

#include "ops.h"

namespace ssl_det {
namespace {

// True for a CUDA tensor; throws when the build has no CUDA kernels to run it.
bool on_cuda(const at::Tensor& t) {
  if (!t.is_cuda()) return false;
#ifndef WITH_CUDA
  TORCH_CHECK(false,
              "ssl_det._ext was built without CUDA, so it cannot run on ", t.device(),
              ". Rebuild it on a host with CUDA torch and nvcc: `SSL_DET_FORCE_CUDA=1 pip "
              "install --no-build-isolation -e .` (or `bash tools/setup_env.sh`).");
#endif
  return true;
}

at::Tensor bbox_overlaps(const at::Tensor& a, const at::Tensor& b, int64_t mode, bool aligned,
                         double eps) {
  if (on_cuda(a)) {
#ifdef WITH_CUDA
    return bbox_overlaps_cuda(a, b, mode, aligned, eps);
#endif
  }
  return bbox_overlaps_cpu(a, b, mode, aligned, eps);
}

std::tuple<at::Tensor, at::Tensor> bbox_overlaps_backward(const at::Tensor& grad,
                                                          const at::Tensor& a,
                                                          const at::Tensor& b, int64_t mode,
                                                          bool aligned, double eps) {
  if (on_cuda(a)) {
#ifdef WITH_CUDA
    return bbox_overlaps_backward_cuda(grad, a, b, mode, aligned, eps);
#endif
  }
  return bbox_overlaps_backward_cpu(grad, a, b, mode, aligned, eps);
}

at::Tensor rotated_iou(const at::Tensor& a, const at::Tensor& b, bool aligned,
                       bool with_height, double eps) {
  if (on_cuda(a)) {
#ifdef WITH_CUDA
    return rotated_iou_cuda(a, b, aligned, with_height, eps);
#endif
  }
  return rotated_iou_cpu(a, b, aligned, with_height, eps);
}

at::Tensor box_jitter(const at::Tensor& boxes, const at::Tensor& noise, double scale) {
  if (on_cuda(boxes)) {
#ifdef WITH_CUDA
    return box_jitter_cuda(boxes, noise, scale);
#endif
  }
  return box_jitter_cpu(boxes, noise, scale);
}

at::Tensor jitter_uncertainty(const at::Tensor& refined, const at::Tensor& labels,
                              int64_t times) {
  if (on_cuda(refined)) {
#ifdef WITH_CUDA
    return jitter_uncertainty_cuda(refined, labels, times);
#endif
  }
  return jitter_uncertainty_cpu(refined, labels, times);
}

// RoIAlign has no CUDA kernel here: ssl_det.ops.roi_align hands CUDA tensors to mmcv.
at::Tensor roi_align_forward(const at::Tensor& input, const at::Tensor& rois, int64_t pooled_h,
                             int64_t pooled_w, double spatial_scale, int64_t sampling_ratio,
                             bool aligned, int64_t impl) {
  TORCH_CHECK(!input.is_cuda() && !rois.is_cuda(),
              "ssl_det._ext.roi_align_forward has a CPU kernel only; use ssl_det.ops.roi_align, "
              "which sends CUDA tensors to mmcv.ops.roi_align");
  return roi_align_forward_cpu(input, rois, pooled_h, pooled_w, spatial_scale, sampling_ratio,
                               aligned, impl);
}

at::Tensor roi_align_backward(const at::Tensor& grad_output, const at::Tensor& rois,
                              int64_t batch, int64_t channels, int64_t height, int64_t width,
                              double spatial_scale, int64_t sampling_ratio, bool aligned,
                              int64_t impl) {
  TORCH_CHECK(!grad_output.is_cuda() && !rois.is_cuda(),
              "ssl_det._ext.roi_align_backward has a CPU kernel only; use "
              "ssl_det.ops.roi_align, which sends CUDA tensors to mmcv.ops.roi_align");
  return roi_align_backward_cpu(grad_output, rois, batch, channels, height, width,
                                spatial_scale, sampling_ratio, aligned, impl);
}

// NMS has no CUDA kernel here: ssl_det.ops.nms hands CUDA tensors to mmcv.
at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold,
               int64_t offset) {
  TORCH_CHECK(!boxes.is_cuda() && !scores.is_cuda(),
              "ssl_det._ext.nms has a CPU kernel only; use ssl_det.ops.nms, which sends CUDA "
              "tensors to mmcv.ops.nms");
  return nms_cpu(boxes, scores, iou_threshold, offset);
}

bool with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace ssl_det

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ssl_det compiled ops; use them through ssl_det.ops";
  m.def("bbox_overlaps", &ssl_det::bbox_overlaps, "axis-aligned IoU/IoF/GIoU forward");
  m.def("bbox_overlaps_backward", &ssl_det::bbox_overlaps_backward,
        "axis-aligned overlap backward: (grad_a, grad_b)");
  m.def("rotated_iou", &ssl_det::rotated_iou, "rotated BEV IoU or 3D IoU");
  m.def("box_jitter", &ssl_det::box_jitter, "Soft Teacher box jitter with given noise");
  m.def("jitter_uncertainty", &ssl_det::jitter_uncertainty,
        "mean normalised std of refined jittered boxes");
  m.def("roi_align_forward", &ssl_det::roi_align_forward,
        "RoIAlign (avg) forward on the CPU, mmcv's maths", py::arg("input"), py::arg("rois"),
        py::arg("pooled_h"), py::arg("pooled_w"), py::arg("spatial_scale"),
        py::arg("sampling_ratio"), py::arg("aligned"), py::arg("impl") = 0);
  m.def("roi_align_backward", &ssl_det::roi_align_backward,
        "RoIAlign (avg) gradient w.r.t. the input on the CPU", py::arg("grad_output"),
        py::arg("rois"), py::arg("batch"), py::arg("channels"), py::arg("height"),
        py::arg("width"), py::arg("spatial_scale"), py::arg("sampling_ratio"),
        py::arg("aligned"), py::arg("impl") = 0);
  m.def("nms", &ssl_det::nms, "greedy NMS on the CPU with mmcv's results (kept indices)",
        py::arg("boxes"), py::arg("scores"), py::arg("iou_threshold"), py::arg("offset") = 0);
  m.def("with_cuda", &ssl_det::with_cuda, "whether the CUDA kernels were compiled in");
}
