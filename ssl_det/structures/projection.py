"""Map boxes and masks between views of one image through 3x3 homographies.

mmdet's geometric transforms record ``homography_matrix``: the matrix that maps the original
image to the transformed view. The teacher predicts on the weak view, the student learns on the
strong view, and these functions carry pseudo labels from one to the other.
"""
from typing import Tuple, Union

import cv2
import numpy as np
import torch
from mmdet.structures.mask import BitmapMasks
from torch import Tensor

ArrayLike = Union[Tensor, np.ndarray]
MaskLike = Union[BitmapMasks, Tensor, np.ndarray]


def _as_float64_tensor(matrix: ArrayLike, device: torch.device) -> Tensor:
    """A (3, 3) homography as a float64 tensor; float64 because inverses of float32 matrices
    with pixel-sized translations lose sub-pixel precision."""
    matrix = torch.as_tensor(matrix, device=device, dtype=torch.float64)
    if matrix.shape != (3, 3):
        raise ValueError(f'A homography must have shape (3, 3), got {tuple(matrix.shape)}.')
    return matrix


def project_boxes(boxes: ArrayLike, homography: ArrayLike) -> ArrayLike:
    """Project axis-aligned boxes through a homography.

    The four corners of each box are transformed and the enclosing axis-aligned box of the
    transformed corners is returned, which is what rotating a box by hand gives (a rotated box
    grows to the box that encloses it). Nothing is clipped; see :func:`filter_degenerate`.

    Args:
        boxes (Tensor | np.ndarray): Boxes of shape (N, 4) in ``(x1, y1, x2, y2)`` format.
        homography (Tensor | np.ndarray): Matrix of shape (3, 3) mapping source-view
            coordinates to target-view coordinates.

    Returns:
        Tensor | np.ndarray: Projected boxes of shape (N, 4), with the type, dtype and device
        of ``boxes``.
    """
    is_numpy = isinstance(boxes, np.ndarray)
    boxes_t = torch.from_numpy(boxes) if is_numpy else boxes
    if boxes_t.dim() != 2 or boxes_t.shape[-1] != 4:
        raise ValueError(f'boxes must have shape (N, 4), got {tuple(boxes_t.shape)}.')
    matrix = _as_float64_tensor(homography, boxes_t.device)
    x1, y1, x2, y2 = boxes_t.to(torch.float64).unbind(-1)
    # corners: (N, 4, 3) homogeneous points, clockwise from the top-left
    corners = torch.stack([
        torch.stack([x1, y1], -1),
        torch.stack([x2, y1], -1),
        torch.stack([x2, y2], -1),
        torch.stack([x1, y2], -1),
    ], dim=1)
    corners = torch.cat([corners, corners.new_ones(corners.shape[:2] + (1, ))], dim=-1)
    projected = corners @ matrix.T
    points = projected[..., :2] / projected[..., 2:3]
    out = torch.cat([points.amin(dim=1), points.amax(dim=1)], dim=-1).to(boxes_t.dtype)
    return out.numpy() if is_numpy else out


def weak_to_strong_homography(weak_homography: ArrayLike,
                              strong_homography: ArrayLike) -> Tensor:
    """The homography that maps the weak view onto the strong view.

    Both inputs map the ORIGINAL image to their view (as mmdet records them), so a point in
    the weak view goes back to the original with ``inv(weak)`` and on to the strong view with
    ``strong``.

    Args:
        weak_homography (Tensor | np.ndarray): (3, 3) original → weak view.
        strong_homography (Tensor | np.ndarray): (3, 3) original → strong view.

    Returns:
        Tensor: (3, 3) float32 matrix ``strong @ inv(weak)``, on the device of
        ``strong_homography`` when it is a tensor, else on the CPU.
    """
    device = (strong_homography.device
              if isinstance(strong_homography, Tensor) else torch.device('cpu'))
    weak = _as_float64_tensor(weak_homography, device)
    strong = _as_float64_tensor(strong_homography, device)
    return (strong @ torch.linalg.inv(weak)).to(torch.float32)


def _warp_one(mask: np.ndarray, matrix: np.ndarray, out_hw: Tuple[int, int]) -> np.ndarray:
    """Warp one (H, W) mask with nearest-neighbour sampling, zeros outside the source."""
    height, width = out_hw
    return cv2.warpPerspective(
        mask, matrix, (width, height), flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _pixel_centre_matrix(homography: ArrayLike) -> np.ndarray:
    """Convert a homography from box coordinates to OpenCV's pixel-index coordinates.

    Boxes treat pixel ``i`` as the interval ``[i, i + 1]``; OpenCV samples pixel ``i`` at
    ``i``. Shifting by half a pixel on each side keeps masks aligned with their boxes (without
    it a horizontal flip ``x -> w - x`` would move every mask one pixel right).
    """
    matrix = np.asarray(
        homography.detach().cpu().numpy() if isinstance(homography, Tensor) else homography,
        dtype=np.float64)
    if matrix.shape != (3, 3):
        raise ValueError(f'A homography must have shape (3, 3), got {matrix.shape}.')
    to_box = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    to_index = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    return to_index @ matrix @ to_box


def _warp_stack(masks: np.ndarray, matrix: np.ndarray, out_hw: Tuple[int, int]) -> np.ndarray:
    """Warp (N, H, W) masks one by one (OpenCV handles at most 4 channels per call)."""
    out = np.zeros((len(masks), ) + tuple(out_hw), dtype=masks.dtype)
    # OpenCV cannot warp bool images; uint8 holds them exactly.
    work_dtype = np.uint8 if masks.dtype == bool else masks.dtype
    for i, mask in enumerate(masks):
        out[i] = _warp_one(np.ascontiguousarray(mask, dtype=work_dtype), matrix, out_hw)
    return out


def project_masks(masks: MaskLike, homography: ArrayLike, out_shape: Tuple[int, int]) -> MaskLike:
    """Warp instance masks through a homography with nearest-neighbour sampling.

    Args:
        masks (BitmapMasks | Tensor | np.ndarray): Masks of shape (N, H, W).
        homography (Tensor | np.ndarray): (3, 3) matrix mapping source to target coordinates
            (box convention: pixel ``i`` covers ``[i, i + 1]``, as in mmdet's transforms).
        out_shape (tuple[int, int]): ``(height, width)`` of the target view.

    Returns:
        BitmapMasks | Tensor | np.ndarray: Masks of shape (N, *out_shape) of the input's type
        (and dtype and device); pixels that come from outside the source are 0.
    """
    out_hw = (int(out_shape[0]), int(out_shape[1]))
    matrix = _pixel_centre_matrix(homography)
    if isinstance(masks, BitmapMasks):
        warped = _warp_stack(masks.masks, matrix, out_hw)
        return BitmapMasks(warped, out_hw[0], out_hw[1])
    if isinstance(masks, Tensor):
        if masks.dim() != 3:
            raise ValueError(f'masks must have shape (N, H, W), got {tuple(masks.shape)}.')
        warped = _warp_stack(masks.detach().cpu().numpy(), matrix, out_hw)
        return torch.from_numpy(warped).to(masks.device)
    if isinstance(masks, np.ndarray):
        if masks.ndim != 3:
            raise ValueError(f'masks must have shape (N, H, W), got {masks.shape}.')
        return _warp_stack(masks, matrix, out_hw)
    raise TypeError('masks must be BitmapMasks, a Tensor or an np.ndarray, '
                    f'got {type(masks).__name__}.')


def filter_degenerate(boxes: Tensor,
                      img_shape: Tuple[int, int],
                      min_size: float = 1.0) -> Tuple[Tensor, Tensor]:
    """Clip boxes to the image and flag those too small to learn from.

    Projected pseudo boxes often land partly or wholly outside the strong view; after
    clipping those become slivers that would only add noise to the student's loss.

    Args:
        boxes (Tensor): (N, 4) boxes in ``(x1, y1, x2, y2)`` format.
        img_shape (tuple[int, int]): ``(height, width)`` of the image.
        min_size (float): Smallest width and height a kept box may have after clipping.
            Defaults to 1.0.

    Returns:
        tuple[Tensor, Tensor]: ``(clipped, keep)``: all N boxes clipped to the image, and a
        bool mask of shape (N,) that is False for boxes whose clipped width or height is below
        ``min_size``. Index the boxes and every per-box field with ``keep``; ``(~keep).sum()``
        is the number dropped.
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f'boxes must have shape (N, 4), got {tuple(boxes.shape)}.')
    height, width = img_shape[0], img_shape[1]
    clipped = boxes.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, height)
    box_w = clipped[:, 2] - clipped[:, 0]
    box_h = clipped[:, 3] - clipped[:, 1]
    keep = (box_w >= min_size) & (box_h >= min_size)
    return clipped, keep
