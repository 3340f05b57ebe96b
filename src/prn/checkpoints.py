"""Checkpoint I/O shared by the jobs (train's resume, evaluate, predict) and the exporter.

Below every job module: nothing here imports ``prn.pipeline``, ``prn.exported_prediction`` or
``prn.tools``, so they can all import it without a cycle.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from prn.data.image_io import parse_image_size
from prn.training import PRNModule

FITTED_PARTS = ("prototypes", "patch_memory")  # net submodules filled at setup, whose buffers a resume must keep


def existing_checkpoint(value: str, option: str) -> Path:
    """``value`` as a path to an existing file, or an error that names ``option`` and what to pass."""
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(
            f"{option}={path} does not exist: pass the checkpoints/last.ckpt of a training run (logs/train/runs/<run>/)"
        )
    return path


def module_from_checkpoint(ckpt: Path) -> PRNModule:
    """The saved module, read from disk once; no encoder download, as the checkpoint has the weights."""
    return PRNModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)


def training_image_size(module: PRNModule, ckpt: Path) -> tuple[int, int]:
    """``(h, w)`` the checkpoint was trained at: new images are resized to it, as the test set was."""
    size = (module.hparams.get("data_config") or {}).get("image_size")
    if size is None:
        raise ValueError(f"checkpoint {ckpt} records no data_config.image_size: it was not written by prn's training")
    return parse_image_size(size)


def install_saved_prototypes(module: PRNModule, ckpt: Path) -> None:
    """Prototypes and patch memory of the run being resumed, so the callback keeps them instead of refitting.

    Lightning restores the checkpoint only after the setup hooks, where the callback runs. Each
    part loads its own slice of the state dict (its buffers resize to the saved sizes); a part the
    checkpoint holds empty or not at all is left to the callback.
    """
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    for name in FITTED_PARTS:
        part: nn.Module | None = getattr(module.net, name, None)
        prefix = f"net.{name}."
        saved = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
        if part is not None and saved and all(value.numel() > 0 for value in saved.values()):
            part.load_state_dict(saved)
