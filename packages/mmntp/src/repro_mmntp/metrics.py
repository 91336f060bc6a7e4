"""Evaluation of the survey's section 5 at toy scale (spec B.5): reconstruction (MSE, PSNR),
codebook usage and perplexity, a pixel classifier as the CLIP-score/GenEval analogue, and a
Frechet distance in the classifier's logit space as the FID analogue."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, peak]."""
    return float(10 * np.log10(peak**2 / max(mse, 1e-12)))


def codebook_stats(codes: np.ndarray, num_codes: int) -> dict:
    """Fraction of codes used and the perplexity exp(H) of the code histogram (max = K)."""
    counts = np.bincount(np.asarray(codes).ravel(), minlength=num_codes).astype(np.float64)
    p = counts / counts.sum()
    nz = p[p > 0]
    return {
        "codes_used": int((counts > 0).sum()),
        "code_usage": float((counts > 0).mean()),
        "code_perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
    }


class PixelClassifier:
    """Multinomial logistic regression on raw pixels, fitted on the training split (the spec's
    96.7% ceiling). ``features`` are its 10 logits, the space of the Frechet distance.

    Fitted with scikit-learn; prediction is the linear map written out (the same argmax as
    ``LogisticRegression.predict``), so a cached fit (``coef``, ``intercept``) needs no sklearn."""

    def __init__(self, images: np.ndarray | None = None, labels: np.ndarray | None = None, seed: int = 0,
                 coef: np.ndarray | None = None, intercept: np.ndarray | None = None):  # fmt: skip
        self.model = None
        if coef is None:
            from sklearn.linear_model import LogisticRegression

            self.model = LogisticRegression(max_iter=3000, C=1.0, random_state=seed)
            self.model.fit(images.reshape(len(images), -1), labels)
            coef, intercept = self.model.coef_, self.model.intercept_
        self.coef, self.intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)

    def features(self, images: np.ndarray) -> np.ndarray:
        x = np.clip(images, 0, 1).reshape(len(images), -1).astype(np.float64)
        return x @ self.coef.T + self.intercept  # (N, 10) logits

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.features(images).argmax(1)

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Share of images the classifier assigns to ``labels``."""
        return float((self.predict(images) == labels).mean())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two (N, d) feature sets."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b)
    covmean = np.real(covmean)
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))
    return max(value, 0.0)


def unique_rows(codes: np.ndarray) -> int:
    return len({row.tobytes() for row in np.ascontiguousarray(codes)})


def novelty(generated: np.ndarray, training: np.ndarray) -> float:
    """Share of generated code sequences that are not a training image's code sequence."""
    seen = {row.tobytes() for row in np.ascontiguousarray(training)}
    return float(np.mean([row.tobytes() not in seen for row in np.ascontiguousarray(generated)]))
