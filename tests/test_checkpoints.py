"""Checkpoints load as data only: a file that is none, or one that holds code, fails naming the option and the fix."""

import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_model import save_checkpoint, tiny_module

from prn.checkpoints import install_saved_prototypes, module_from_checkpoint, read_checkpoint, readable_checkpoint
from prn.models import PRNet
from prn.tools.export import export_checkpoint
from prn.training.module import PRNModule


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tiny_module(), tmp_path_factory.mktemp("ckpt") / "last.ckpt")


def _not_checkpoints(folder: Path) -> dict[str, Path]:
    """A note, an empty file and a zip archive torch did not write."""
    (folder / "notes.txt").write_text("lr 1e-4 looked best\n")
    (folder / "empty.ckpt").write_bytes(b"")
    with zipfile.ZipFile(folder / "images.zip", "w") as archive:
        archive.writestr("a.txt", "not a tensor")
    return {name: folder / name for name in ("notes.txt", "empty.ckpt", "images.zip")}


@pytest.mark.parametrize("name", ["notes.txt", "empty.ckpt", "images.zip"])
def test_a_file_that_is_no_checkpoint_names_the_option_and_the_fix(tmp_path, name):
    path = _not_checkpoints(tmp_path)[name]
    message = rf"ckpt_path={path} is not a PyTorch checkpoint .*: pass the checkpoints/last.ckpt of a training run"
    with pytest.raises(ValueError, match=message):
        module_from_checkpoint(path)
    with pytest.raises(ValueError, match=message):
        export_checkpoint(path, tmp_path / "prn.pt2")
    with pytest.raises(ValueError, match=rf"resume={path} is not a PyTorch checkpoint"):
        readable_checkpoint(str(path), "resume")


def test_a_torch_file_that_is_no_training_checkpoint_says_so(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="is a PyTorch file but not a checkpoint of prn's training"):
        module_from_checkpoint(tmp_path / "weights.pt")


def test_prns_checkpoint_loads_as_data_only(checkpoint):
    assert torch.serialization.get_unsafe_globals_in_checkpoint(checkpoint) == []
    torch.load(checkpoint, map_location="cpu", weights_only=True)
    module = module_from_checkpoint(checkpoint)
    assert module.net.prototypes.is_fitted and module.hparams.data_config["category"] == "tiny"


def _resaved(checkpoint: Path, path: Path, **hyper_parameters) -> Path:
    """``checkpoint`` saved again to ``path`` with these hyper-parameters added."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved["hyper_parameters"].update(hyper_parameters)
    torch.save(saved, path)
    return path


def test_paths_and_numpy_scalars_of_a_hand_built_module_load_without_trust(checkpoint, tmp_path):
    """Data-only types a notebook may put in ``data_config``: allowed by ``prn.checkpoints.SAFE_GLOBALS``."""
    data = {"name": "folder", "root": tmp_path / "parts", "image_size": np.int64(128), "scale": np.float32(0.5)}
    restored = module_from_checkpoint(_resaved(checkpoint, tmp_path / "last.ckpt", data_config=data))
    assert restored.hparams.data_config == data


def test_a_checkpoint_that_holds_code_fails_unless_trusted(checkpoint, tmp_path):
    """Early prn saved the optimiser partial among the hyper-parameters: a pickled function, so code."""
    _resaved(checkpoint, tmp_path / "old.ckpt", optimizer=partial(torch.optim.Adam, lr=1e-4))
    message = r"holds code, .*functools\.partial.*a checkpoint from a stranger is a program.*trust_checkpoint=true"
    with pytest.raises(ValueError, match=message):
        module_from_checkpoint(tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match=rf"resume={tmp_path / 'old.ckpt'} holds code"):
        install_saved_prototypes(module_from_checkpoint(checkpoint), tmp_path / "old.ckpt")
    module = module_from_checkpoint(tmp_path / "old.ckpt", trusted=True)
    assert module.optimizer_factory.keywords == {"lr": 1e-4}
    assert "state_dict" in read_checkpoint(tmp_path / "old.ckpt", trusted=True)


def test_a_resume_keeps_the_pose_template_it_was_trained_with(tmp_path):
    torch.manual_seed(0)
    saved = PRNModule(PRNet(encoder_weights=None, msa_depth=1, pose_search=30.0))
    saved.net.registration.fit(saved.net.registration.signals(torch.rand(2, 3, 128, 128)))
    torch.save({"state_dict": saved.state_dict(), "hyper_parameters": {}}, tmp_path / "last.ckpt")
    resumed = PRNModule(PRNet(encoder_weights=None, msa_depth=1, pose_search=30.0))
    install_saved_prototypes(resumed, tmp_path / "last.ckpt")
    assert torch.equal(resumed.net.registration.template, saved.net.registration.template)
