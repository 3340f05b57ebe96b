"""The Lightning side of PRN: the training/testing module and its callbacks."""

from prn.training.callbacks import PrototypeCallback, TrainingTimer
from prn.training.module import PRNModule

__all__ = ["PRNModule", "PrototypeCallback", "TrainingTimer"]
