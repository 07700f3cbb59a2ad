"""Classification metrics from logits: confusion matrix and per-class accuracy."""

from __future__ import annotations

import torch


def confusion_matrix(logits: torch.Tensor, target: torch.Tensor, n_classes: int) -> list[list[int]]:
    """Counts with true classes as rows and predicted classes as columns (scikit-learn's layout)."""
    predicted = logits.argmax(dim=1)
    flat = target.to(predicted.device) * n_classes + predicted
    return torch.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes).tolist()


def per_class_accuracy(matrix: list[list[int]], class_names: list[str]) -> dict[str, float | None]:
    """Recall of each class (correct / present); None for a class absent from the split."""
    return {
        name: (row[index] / sum(row) if sum(row) else None)
        for index, (name, row) in enumerate(zip(class_names, matrix))
    }
