"""The Lightning side of PRN: the training/testing module and its callbacks."""

from prn.lightning.callbacks import PrototypeCallback, TrainingTimer
from prn.lightning.module import PRNModule

__all__ = ["PRNModule", "PrototypeCallback", "TrainingTimer"]
