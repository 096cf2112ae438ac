"""No-reference technical quality measures on decoded frames (CPU only).

- :class:`Brisque`: BRISQUE (Mittal et al. 2012) with the SVM the ``brisque`` package
  ships. brisque 0.2.0 breaks under numpy 2.x in ``scale_features`` (its features are
  1-element arrays, and ``float()`` of a 1-d array is an error there); the subclass
  below flattens them. Its MSCN filtering uses OpenCV instead of scipy (same kernel,
  ~6x faster).
- :func:`sharpness`: variance of the Laplacian of the luma.
- :func:`noise_sigma`: Immerkaer's fast noise estimate (std of a Laplacian-difference
  kernel response), in 8-bit levels.
- :func:`exposure`: the fraction of clipped (near-black or near-white) luma pixels and
  the mean luma.
- :func:`blockiness`: mean luma step across the 8-pixel coding grid divided by the mean
  step elsewhere (1 = no block edges; heavily compressed video is well above 1).
"""

from __future__ import annotations

import math

import numpy as np

_brisque_cls = None


def brisque_model():
    """A BRISQUE scorer that works under numpy 2 (see module docstring)."""
    global _brisque_cls
    if _brisque_cls is None:
        import cv2
        from brisque import BRISQUE

        class _Brisque(BRISQUE):  # type: ignore[misc]
            def scale_features(self, features):  # numpy-2-safe: features are 0-d or 1-element arrays
                f = np.array([np.asarray(x, dtype=np.float64).reshape(-1)[0] for x in features])
                lo = np.asarray(self.scale_params["min_"], dtype=np.float64).reshape(-1)
                hi = np.asarray(self.scale_params["max_"], dtype=np.float64).reshape(-1)
                return -1 + 2.0 / (hi - lo) * (f - lo)

            def calculate_mscn_coefficients(self, image, kernel_size=6, sigma=7 / 6):
                img = np.asarray(image, dtype=np.float64)
                kernel = self.gaussian_kernel2d(kernel_size, sigma=sigma)
                # scipy's convolve2d(..., 'same') zero-pads; so does BORDER_CONSTANT
                mu = cv2.filter2D(img, -1, kernel[::-1, ::-1], borderType=cv2.BORDER_CONSTANT)
                sq = cv2.filter2D(img * img, -1, kernel[::-1, ::-1], borderType=cv2.BORDER_CONSTANT)
                dev = np.sqrt(np.abs(mu * mu - sq))
                return (img - mu) / (dev + 1 / 255)

        _brisque_cls = _Brisque
    return _brisque_cls(url=False)


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> float32 luma [H, W] in 0..255 (BT.601)."""
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def sharpness(y: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(y.astype(np.float32), cv2.CV_32F, ksize=1).var())


def noise_sigma(y: np.ndarray) -> float:
    """Immerkaer (1996), sigma = sqrt(pi/2) / 6 * mean |I * N|, over the pixels away from
    edges (Sobel magnitude below its 80th percentile), so texture is not taken for noise."""
    import cv2

    h, w = y.shape
    if h < 8 or w < 8:
        return 0.0
    f = y.astype(np.float32)
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = np.abs(cv2.filter2D(f, -1, k))[1:-1, 1:-1]
    g = np.hypot(cv2.Sobel(f, cv2.CV_32F, 1, 0), cv2.Sobel(f, cv2.CV_32F, 0, 1))[1:-1, 1:-1]
    flat = g <= np.percentile(g, 80)
    if not flat.any():
        return 0.0
    return float(math.sqrt(math.pi / 2) * r[flat].mean() / 6)


def exposure(y: np.ndarray, low: float = 4, high: float = 251) -> tuple[float, float]:
    """(fraction of clipped pixels, mean luma 0..1)."""
    clipped = float(((y <= low) | (y >= high)).mean())
    return clipped, float(y.mean() / 255.0)


def blockiness(y: np.ndarray, block: int = 8) -> float:
    """Mean |step| across block boundaries / mean |step| inside blocks, both directions."""
    y = y.astype(np.float32)
    ratios = []
    for d in (np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0).T)):
        n = d.shape[1]
        if n < 2 * block:
            continue
        cols = np.arange(n)
        edge = (cols % block) == block - 1  # step between pixel 8k+7 and 8k+8
        inner = d[:, ~edge].mean()
        ratios.append(float(d[:, edge].mean() / max(inner, 1e-3)))
    return float(np.mean(ratios)) if ratios else 1.0


# ------------------------------------------------------------------ combining
def sub_scores(m: dict[str, float]) -> dict[str, float]:
    """Each measure mapped to 0 (bad) .. 1 (good)."""
    def clip01(x: float) -> float:
        return float(min(1.0, max(0.0, x)))

    clipped = m["exposure"]
    dark_bright = max(0.0, abs(m["mean_luma"] - 0.5) - 0.3) / 0.2  # 0 inside 0.2..0.8, 1 at 0 or 1
    return {
        "brisque": clip01((80.0 - m["brisque"]) / 70.0),  # 10 -> 1, 80 -> 0
        "sharpness": clip01(math.log10(1.0 + m["sharpness"]) / 2.5),  # var 316+ -> 1
        "noise": clip01(1.0 - (m["noise"] - 1.5) / 6.0),  # sigma 1.5 -> 1, 7.5 -> 0
        "exposure": clip01(1.0 - 2.0 * clipped) * clip01(1.0 - dark_bright),
        "blockiness": clip01(1.0 - (m["blockiness"] - 1.05) / 0.6),  # 1.05 -> 1, 1.65 -> 0
    }


def combine(m: dict[str, float], weights: dict[str, float]) -> float:
    subs = sub_scores(m)
    total = sum(w for k, w in weights.items() if k in subs)
    if total <= 0:
        raise ValueError("quality weights must name at least one of " + ", ".join(subs))
    return float(sum(subs[k] * w for k, w in weights.items() if k in subs) / total)
