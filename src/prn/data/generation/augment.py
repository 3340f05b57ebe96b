"""Image operations shared by the anomaly sources, drawn reproducibly from a numpy rng.

Albumentations keeps its own random state; every call here builds an ``A.Compose``
seeded from the caller's ``numpy.random.Generator``, so one batch seed fixes both
which operations run and their parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import albumentations as A
import cv2
import numpy as np

MAX_SEED = 2**31 - 1


def extended_color_ops() -> dict[str, A.BasicTransform]:
    """Aug_1 of PRN's extended anomalies (Sec. 3.4): the seven named colour operations."""
    return {
        "equalize": A.Equalize(p=1.0),
        "solarize": A.Solarize(threshold_range=(0.3, 0.7), p=1.0),
        "posterize": A.Posterize(num_bits=(2, 5), p=1.0),
        "sharpness": A.Sharpen(alpha=(0.5, 1.0), lightness=(0.8, 1.2), p=1.0),
        "auto_contrast": A.AutoContrast(p=1.0),
        "invert": A.InvertImg(p=1.0),
        "gamma_contrast": A.RandomGamma(gamma_limit=(50, 200), p=1.0),
    }


def texture_ops() -> dict[str, A.BasicTransform]:
    """DRAEM's texture augmentations for heterologous anomalies, mapped to albumentations.

    imgaug → albumentations: GammaContrast(0.5, 2) → RandomGamma(50, 200);
    MultiplyAndAddToBrightness → RandomBrightnessContrast; EnhanceSharpness → Sharpen;
    AddToHueAndSaturation(±50) → HueSaturationValue; Solarize(32..128); Posterize;
    Invert; Autocontrast; Equalize; Affine(rotate ±45°) with reflected borders, so no
    black corners end up inside the anomaly.
    """
    return {
        "gamma_contrast": A.RandomGamma(gamma_limit=(50, 200), p=1.0),
        "brightness": A.RandomBrightnessContrast(brightness_limit=(-0.12, 0.12), contrast_limit=(-0.2, 0.2), p=1.0),
        "sharpness": A.Sharpen(alpha=(0.5, 1.0), lightness=(0.8, 1.2), p=1.0),
        "hue_saturation": A.HueSaturationValue(
            hue_shift_limit=(-25, 25), sat_shift_limit=(-50, 50), val_shift_limit=(0, 0), p=1.0
        ),
        "solarize": A.Solarize(threshold_range=(32 / 255, 128 / 255), p=1.0),
        "posterize": A.Posterize(num_bits=(2, 6), p=1.0),
        "invert": A.InvertImg(p=1.0),
        "auto_contrast": A.AutoContrast(p=1.0),
        "equalize": A.Equalize(p=1.0),
        "rotate": A.Affine(rotate=(-45, 45), border_mode=cv2.BORDER_REFLECT_101, p=1.0),
    }


def homologous_color_ops() -> A.BasicTransform:
    """Colour change for homologous anomalies: strong enough that a pasted normal patch differs."""
    return A.ColorJitter(brightness=(0.5, 1.5), contrast=(0.5, 1.5), saturation=(0.3, 1.7), hue=(-0.15, 0.15), p=1.0)


def seeded_compose(transforms: Sequence[A.BasicTransform], rng: np.random.Generator) -> A.Compose:
    """A pipeline whose albumentations randomness is fixed by one draw from ``rng``."""
    return A.Compose(list(transforms), seed=int(rng.integers(MAX_SEED)))


def apply_random_ops(
    image: np.ndarray, ops: Mapping[str, A.BasicTransform], count: int, rng: np.random.Generator
) -> np.ndarray:
    """Apply ``count`` distinct operations of ``ops``, chosen and parametrised by ``rng``, in random order."""
    if not 0 < count <= len(ops):
        raise ValueError(f"apply_random_ops: count must be in [1, {len(ops)}], got {count}")
    names = list(ops)
    chosen = rng.choice(len(names), size=count, replace=False)
    return seeded_compose([ops[names[i]] for i in chosen], rng)(image=image)["image"]


def sample_beta(beta: Sequence[float], rng: np.random.Generator) -> float:
    """Opacity β ~ U(beta[0], beta[1]); β = 0 pastes the anomaly fully, β → 1 hides it."""
    return float(rng.uniform(beta[0], beta[1]))


def validate_beta(beta: Sequence[float], owner: str) -> tuple[float, float]:
    """Checked ``(low, high)`` opacity range, raising with the option's owner named."""
    if len(beta) != 2 or not 0.0 <= beta[0] <= beta[1] < 1.0:
        raise ValueError(f"{owner} beta must be (low, high) with 0 <= low <= high < 1, got {tuple(beta)}")
    return float(beta[0]), float(beta[1])


def blend_anomaly(base: np.ndarray, fill: np.ndarray, mask: np.ndarray, beta: float) -> np.ndarray:
    """PRN Eq. 4 / DRAEM: ``E = (1−M)⊙N + (1−β)·(M⊙fill) + β·(M⊙N)`` for a binary mask M.

    Pixels where M = 0 are returned bit-identical to ``base``.
    """
    inside = mask.astype(bool)
    result = base.copy()
    mixed = (1.0 - beta) * fill[inside].astype(np.float32) + beta * base[inside].astype(np.float32)
    result[inside] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return result
