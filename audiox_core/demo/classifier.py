"""A tiny multinomial logistic regression in numpy (used by the demo-world detectors).

``p(class | x) = softmax(((x - mean) / std) @ W + b)``; fitted by full-batch gradient descent on
the mean cross-entropy plus ``l2/2 * |W|^2``, from zero weights (so fitting is deterministic).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import InputError


class SoftmaxClassifier:
    def __init__(self, classes: Sequence[str], feature_names: Sequence[str]):
        self.classes = tuple(classes)
        self.feature_names = tuple(feature_names)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.w: np.ndarray | None = None
        self.b: np.ndarray | None = None

    def _x(self, feats: Sequence[dict[str, float]]) -> np.ndarray:
        try:
            return np.array([[f[n] for n in self.feature_names] for f in feats], dtype=np.float64)
        except KeyError as e:
            raise InputError(f"feature dict lacks {e} (classifier needs {self.feature_names})") from None

    def fit(self, feats: Sequence[dict[str, float]], labels: Sequence[str], l2: float = 1e-3,
            steps: int = 3000, lr: float = 0.5) -> "SoftmaxClassifier":
        if not feats:
            raise InputError("cannot fit a classifier on zero examples")
        x = self._x(feats)
        y = np.array([self.classes.index(lab) for lab in labels])
        self.mean = x.mean(axis=0)
        self.std = x.std(axis=0) + 1e-6
        z = (x - self.mean) / self.std
        n, d = z.shape
        onehot = np.eye(len(self.classes))[y]
        w = np.zeros((d, len(self.classes)))
        b = np.zeros(len(self.classes))
        for _ in range(steps):
            logits = z @ w + b
            logits -= logits.max(axis=1, keepdims=True)
            pr = np.exp(logits)
            pr /= pr.sum(axis=1, keepdims=True)
            g = (pr - onehot) / n
            w -= lr * (z.T @ g + l2 * w)
            b -= lr * g.sum(axis=0)
        self.w, self.b = w, b
        return self

    def logits(self, feats: Sequence[dict[str, float]]) -> np.ndarray:
        if self.w is None:
            raise InputError("classifier is not fitted")
        return ((self._x(feats) - self.mean) / self.std) @ self.w + self.b

    def predict(self, feats: Sequence[dict[str, float]]) -> list[str]:
        if not feats:
            return []
        return [self.classes[i] for i in np.argmax(self.logits(feats), axis=1)]

    def accuracy(self, feats: Sequence[dict[str, float]], labels: Sequence[str]) -> float:
        if not labels:
            return 1.0
        return float(np.mean([p == lab for p, lab in zip(self.predict(feats), labels)]))

    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "feature_names": list(self.feature_names),
                "mean": self.mean.tolist(), "std": self.std.tolist(), "w": self.w.tolist(), "b": self.b.tolist()}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "SoftmaxClassifier":
        c = SoftmaxClassifier(d["classes"], d["feature_names"])
        c.mean, c.std = np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64)
        c.w, c.b = np.asarray(d["w"], dtype=np.float64), np.asarray(d["b"], dtype=np.float64)
        k, f = len(c.classes), len(c.feature_names)
        if c.w.shape != (f, k) or c.b.shape != (k,) or c.mean.shape != (f,) or c.std.shape != (f,):
            raise InputError(f"classifier parameters have inconsistent shapes for {f} features and {k} classes")
        return c
