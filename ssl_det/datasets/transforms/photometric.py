"""Photometric strong augmentation for the student's view, built on albumentations 2.x."""
from typing import Optional, Sequence, Tuple

import albumentations as A
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.dist import get_rank

from ssl_det.registry import TRANSFORMS


def _pair(value: Sequence[float], name: str) -> Tuple[float, float]:
    """A (min, max) range from a config list or tuple."""
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f'{name} must be a (min, max) pair with min <= max, got {value!r}.')
    return float(value[0]), float(value[1])


def _check_prob(**probs: float) -> None:
    bad = {k: v for k, v in probs.items() if not 0 <= v <= 1}
    if bad:
        raise ValueError(f'Probabilities must lie in [0, 1], got {bad}.')


@TRANSFORMS.register_module()
class AlbuPhotometric(BaseTransform):
    """Colour jitter, Gaussian blur, Gaussian noise and JPEG compression, each with its own
    probability, applied to ``results['img']`` only.

    Geometry is untouched, so ``gt_bboxes``, ``gt_masks``, ``img_shape`` and
    ``homography_matrix`` stay valid; put geometric steps (which record the homography) in
    mmdet's transforms around it. Defaults follow Unbiased Teacher's strong view plus noise and
    JPEG artefacts. Place it before any float conversion: it needs a uint8 image.

    Randomness: with ``seed=None`` each call seeds albumentations from NumPy's global RNG, which
    mmengine seeds per rank and dataloader worker from ``randomness.seed`` -- so runs repeat
    under a fixed experiment seed and workers differ. With an int ``seed`` the transform keeps
    its own stream, seeded from ``(seed, rank, worker id)`` so that workers and ranks do not
    repeat one another's augmentations.

    Args:
        color_jitter_prob (float): Probability of colour jitter. Defaults to 0.8.
        brightness (float): Brightness factor drawn from ``[1 - b, 1 + b]``. Defaults to 0.4.
        contrast (float): Contrast factor drawn from ``[1 - c, 1 + c]``. Defaults to 0.4.
        saturation (float): Saturation factor drawn from ``[1 - s, 1 + s]``. Defaults to 0.4.
        hue (float): Hue shift drawn from ``[-h, h]`` (fraction of the hue circle, h <= 0.5).
            Defaults to 0.1.
        blur_prob (float): Probability of Gaussian blur. Defaults to 0.5.
        blur_sigma (Sequence[float]): (min, max) blur sigma in pixels; the kernel size follows
            from sigma. Defaults to (0.1, 2.0).
        noise_prob (float): Probability of Gaussian noise. Defaults to 0.2.
        noise_std (Sequence[float]): (min, max) noise std as a fraction of 255.
            Defaults to (0.01, 0.05).
        jpeg_prob (float): Probability of JPEG compression. Defaults to 0.2.
        jpeg_quality (Sequence[int]): (min, max) JPEG quality in [1, 100]. Defaults to (40, 95).
        channel_order (str): Channel order of ``results['img']``, 'bgr' (mmdet's
            ``LoadImageFromFile`` default) or 'rgb'; hue and saturation need to know.
            Defaults to 'bgr'.
        seed (int, optional): Own random stream (see above). Defaults to None.
    """

    def __init__(self,
                 color_jitter_prob: float = 0.8,
                 brightness: float = 0.4,
                 contrast: float = 0.4,
                 saturation: float = 0.4,
                 hue: float = 0.1,
                 blur_prob: float = 0.5,
                 blur_sigma: Sequence[float] = (0.1, 2.0),
                 noise_prob: float = 0.2,
                 noise_std: Sequence[float] = (0.01, 0.05),
                 jpeg_prob: float = 0.2,
                 jpeg_quality: Sequence[int] = (40, 95),
                 channel_order: str = 'bgr',
                 seed: Optional[int] = None) -> None:
        _check_prob(color_jitter_prob=color_jitter_prob, blur_prob=blur_prob,
                    noise_prob=noise_prob, jpeg_prob=jpeg_prob)
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}.")
        quality = tuple(int(q) for q in _pair(jpeg_quality, 'jpeg_quality'))
        self.channel_order = channel_order
        self.seed = seed
        self._seeded_for: Optional[Tuple[int, int]] = None
        self.pipeline = A.Compose([
            A.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation,
                          hue=hue, p=color_jitter_prob),
            A.GaussianBlur(sigma_limit=_pair(blur_sigma, 'blur_sigma'), blur_limit=0,
                           p=blur_prob),
            A.GaussNoise(std_range=_pair(noise_std, 'noise_std'), p=noise_prob),
            A.ImageCompression(compression_type='jpeg', quality_range=quality, p=jpeg_prob),
        ], seed=seed)

    def _seed_stream(self) -> None:
        """Seed albumentations for this call (seed=None) or once per rank and worker."""
        if self.seed is None:
            self.pipeline.set_random_seed(int(np.random.randint(2**31)))
            return
        worker = torch.utils.data.get_worker_info()
        key = (get_rank(), worker.id if worker is not None else 0)
        if key != self._seeded_for:
            mixed = np.random.SeedSequence([self.seed % 2**32, *key]).generate_state(1)[0]
            self.pipeline.set_random_seed(int(mixed))
            self._seeded_for = key

    def transform(self, results: dict) -> dict:
        """Augment ``results['img']`` in place of the old image; nothing else changes.

        Args:
            results (dict): Result dict with a uint8 ``img`` of shape (H, W) or (H, W, C).

        Returns:
            dict: The same dict with the new image.
        """
        img = results['img']
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
            raise TypeError(
                'AlbuPhotometric needs a uint8 np.ndarray image, got '
                f'{getattr(img, "dtype", type(img).__name__)}; place it before any step that '
                'converts the image to float.')
        self._seed_stream()
        swap = self.channel_order == 'bgr' and img.ndim == 3 and img.shape[2] == 3
        image = np.ascontiguousarray(img[..., ::-1]) if swap else img
        out = self.pipeline(image=image)['image']
        results['img'] = np.ascontiguousarray(out[..., ::-1]) if swap else out
        return results

    def __repr__(self) -> str:
        names = ', '.join(f'{type(t).__name__}(p={t.p})' for t in self.pipeline.transforms)
        return f'{self.__class__.__name__}([{names}], seed={self.seed})'
