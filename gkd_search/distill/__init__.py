"""The method-agnostic training loop that fits a student (or a teacher)."""

from .loop import TrainingSettings, TrainOutcome, accuracy, evaluate, train_model

__all__ = ["TrainOutcome", "TrainingSettings", "accuracy", "evaluate", "train_model"]
