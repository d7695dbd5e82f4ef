"""Confusion counts and score histograms of scored SUSY rows, and the ROC AUC pooled from the histograms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Confusion:
    """Counts of one scored set at threshold 0.5 plus score histograms per true class (for a pooled AUC)."""

    tp: int
    fp: int
    tn: int
    fn: int
    positive_hist: np.ndarray
    negative_hist: np.ndarray

    @property
    def rows(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def __add__(self, other: "Confusion") -> "Confusion":
        """The counts and histograms of both sets together."""
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn,
                         self.positive_hist + other.positive_hist, self.negative_hist + other.negative_hist)


def confusion(labels: np.ndarray, scores: np.ndarray, bins: int) -> Confusion:
    """Confusion counts at 0.5 and `bins`-bin histograms of the scores of positives and negatives."""
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(scores) >= 0.5
    index = np.minimum((np.asarray(scores) * bins).astype(np.int64), bins - 1).clip(0)
    return Confusion(
        tp=int((predicted & labels).sum()), fp=int((predicted & ~labels).sum()),
        tn=int((~predicted & ~labels).sum()), fn=int((~predicted & labels).sum()),
        positive_hist=np.bincount(index[labels], minlength=bins),
        negative_hist=np.bincount(index[~labels], minlength=bins),
    )


def histogram_auc(positive_hist: np.ndarray, negative_hist: np.ndarray) -> float:
    """ROC AUC from score histograms: P(score_pos > score_neg), pairs within one bin counted as half."""
    positives, negatives = float(np.sum(positive_hist)), float(np.sum(negative_hist))
    if positives == 0 or negatives == 0:
        return float("nan")
    negatives_below = np.cumsum(negative_hist) - negative_hist
    wins = np.sum(positive_hist * negatives_below) + 0.5 * np.sum(positive_hist * negative_hist)
    return float(wins / (positives * negatives))
