"""Checkpoint I/O shared by the jobs (train's resume, evaluate, predict) and the exporter.

Below every job module: nothing here imports ``prn.pipeline``, ``prn.prediction`` or
``prn.tools``, so they can all import it without a cycle.

Checkpoints load with ``weights_only=True``: unpickling may call any function a file names, so a
checkpoint from a stranger is a program. prn's own checkpoints need nothing beyond what PyTorch
allows (tensors, containers, numbers, strings): the module stores its calibration and score choice
as dicts and its data config as a plain container. :data:`SAFE_GLOBALS` adds the few data-only
types a hand-built module's hyper-parameters may carry; anything else needs ``trust_checkpoint=true``.
"""

from __future__ import annotations

import pathlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prn.data.image_io import parse_image_size
from prn.training import PRNModule

FITTED_PARTS = ("prototypes", "patch_memory", "registration")  # filled at setup; a resume keeps their buffers
TRUST_OPTION = "trust_checkpoint"
CHECKPOINT_FIX = "pass the checkpoints/last.ckpt of a training run (logs/train/runs/<run>/)"
NUMPY_DTYPES = "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64".split()
# Data-only types that construct nothing but themselves: paths, and numpy scalars (their pickle
# names the scalar constructor, np.dtype and the dtype's class). Registered process-wide, so that
# Lightning's own load on resume= accepts them too.
SAFE_GLOBALS = [
    pathlib.PosixPath,
    pathlib.WindowsPath,
    np.float64(0).__reduce__()[0],
    np.dtype,
    *(type(np.dtype(name)) for name in NUMPY_DTYPES),
]
torch.serialization.add_safe_globals(SAFE_GLOBALS)


def existing_checkpoint(value: str, option: str) -> Path:
    """``value`` as a path to an existing file, or an error that names ``option`` and what to pass."""
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"{option}={path} does not exist: {CHECKPOINT_FIX}")
    return path


def readable_checkpoint(value: str, option: str, trusted: bool = False) -> Path:
    """``value`` as an existing checkpoint that loads, checked before a job does any work."""
    path = existing_checkpoint(value, option)
    read_checkpoint(path, option, trusted)
    return path


def read_checkpoint(ckpt: Path, option: str = "ckpt_path", trusted: bool = False) -> dict[str, Any]:
    """The checkpoint's contents (tensors memory-mapped, not read), or an error naming ``option`` and the fix.

    Without ``trusted`` it loads as data only: a file that names other code fails here, never runs it.
    """
    if not zipfile.is_zipfile(ckpt):
        raise ValueError(
            f"{option}={ckpt} is not a PyTorch checkpoint (not the zip archive torch.save writes): {CHECKPOINT_FIX}"
        )
    try:
        saved = torch.load(ckpt, map_location="cpu", weights_only=not trusted, mmap=True)
    except pickle.UnpicklingError as error:
        found = ", ".join(sorted(torch.serialization.get_unsafe_globals_in_checkpoint(ckpt))) or str(error)
        raise ValueError(
            f"{option}={ckpt} holds code, not only weights and plain data ({found}): loading it would run that code, "
            f"and a checkpoint from a stranger is a program. If you trust whoever wrote it, load it anyway with "
            f"{TRUST_OPTION}=true"
        ) from error
    except (RuntimeError, EOFError) as error:
        raise ValueError(f"{option}={ckpt} is not a PyTorch checkpoint ({error}): {CHECKPOINT_FIX}") from error
    if not isinstance(saved, dict) or not {"state_dict", "hyper_parameters"} <= saved.keys():
        raise ValueError(
            f"{option}={ckpt} is a PyTorch file but not a checkpoint of prn's training "
            f"(no state_dict and hyper_parameters): {CHECKPOINT_FIX}"
        )
    return saved


def module_from_checkpoint(ckpt: Path, trusted: bool = False, option: str = "ckpt_path") -> PRNModule:
    """The saved module, read from disk once; no encoder download, as the checkpoint has the weights."""
    read_checkpoint(ckpt, option, trusted)
    return PRNModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=not trusted)


def training_image_size(module: PRNModule, ckpt: Path) -> tuple[int, int]:
    """``(h, w)`` the checkpoint was trained at: new images are resized to it, as the test set was."""
    size = (module.hparams.get("data_config") or {}).get("image_size")
    if size is None:
        raise ValueError(f"checkpoint {ckpt} records no data_config.image_size: it was not written by prn's training")
    return parse_image_size(size)


def install_saved_prototypes(module: PRNModule, ckpt: Path, trusted: bool = False) -> None:
    """Prototypes, patch memory and pose template of the run being resumed, so the callback keeps them.

    Lightning restores the checkpoint only after the setup hooks, where the callback runs. Each
    part loads its own slice of the state dict (its buffers resize to the saved sizes); a part the
    checkpoint holds empty or not at all is left to the callback.
    """
    state = read_checkpoint(ckpt, "resume", trusted)["state_dict"]
    for name in FITTED_PARTS:
        part: nn.Module | None = getattr(module.net, name, None)
        prefix = f"net.{name}."
        saved = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
        if part is not None and saved and all(value.numel() > 0 for value in saved.values()):
            part.load_state_dict(saved)
