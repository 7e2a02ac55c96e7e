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
  m.def("with_cuda", &ssl_det::with_cuda, "whether the CUDA kernels were compiled in");
}
