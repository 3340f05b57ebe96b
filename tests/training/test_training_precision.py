"""bf16 autocast (`trainer.precision=bf16-mixed`) and `model.compile` in the real Lightning training loop."""

from __future__ import annotations

import collections

import lightning as L
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, Dataset

from prn.models import PRNet
from prn.training.callbacks import PrototypeCallback
from prn.training.module import PRNModule

SIZE = 128


class _Batches(Dataset):
    """Images with a square defect in the mask of every other one."""

    def __init__(self, count: int):
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(count, 3, SIZE, SIZE, generator=generator)
        self.masks = torch.zeros(count, 1, SIZE, SIZE)
        self.masks[::2, :, 20:50, 30:60] = 1.0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "mask": self.masks[i]}


class _TinyData(L.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(_Batches(4), batch_size=2)

    def normal_dataloader(self):
        return DataLoader(_Batches(4), batch_size=2)


class _OutputDtypes(TorchDispatchMode):
    """Output dtype of every aten op, as autocast dispatched it."""

    def __init__(self):
        super().__init__()
        self.dtypes: dict[str, set[torch.dtype]] = collections.defaultdict(set)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        if isinstance(first, torch.Tensor):
            self.dtypes[func.__name__.split(".")[0]].add(first.dtype)
        return out


class _RecordSecondStep(L.Callback):
    """Records the ops of one whole training step: forward, loss, backward, optimiser."""

    def __init__(self):
        self.mode = _OutputDtypes()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 1:
            self.mode.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 1:
            self.mode.__exit__(None, None, None)


def _fit(module: PRNModule, precision: str, steps: int = 2, *callbacks: L.Callback) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu",
        precision=precision,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[PrototypeCallback(iterations=2), *callbacks],
    )
    trainer.fit(module, datamodule=_TinyData())
    return trainer


def test_bf16_mixed_runs_convolutions_in_bf16_and_loss_distances_prototypes_and_weights_in_float32():
    torch.manual_seed(0)
    module = PRNModule(PRNet(encoder_weights=None, msa_depth=1))  # one MSA block a scale: bf16 is emulated on AVX2
    prototype_feature_dtypes = set()
    features = module.net.prototype_features

    def recording_features(images):
        maps = features(images)
        prototype_feature_dtypes.update(m.dtype for m in maps)
        return maps

    module.net.prototype_features = recording_features
    recorder = _RecordSecondStep()
    _fit(module, "bf16-mixed", 2, recorder)
    dtypes = recorder.mode.dtypes
    assert dtypes["convolution"] == {torch.bfloat16} and dtypes["convolution_backward"] == {torch.bfloat16}
    assert dtypes["mm"] == {torch.float32}  # nearest-prototype distances (the network has no other matmul)
    for loss_op in ("log_sigmoid_forward", "sigmoid", "smooth_l1_loss"):
        assert dtypes[loss_op] == {torch.float32}, loss_op
    assert prototype_feature_dtypes == {torch.float32}
    assert all(p.dtype == torch.float32 for p in module.parameters())


def test_compile_wraps_only_the_training_forward_and_leaves_state_dict_keys_alone():
    module = PRNModule(PRNet(encoder_weights=None), compile=True)
    keys = list(module.state_dict())
    module.setup("test")
    assert module._training_forward is None  # test, predict and export run the plain network
    module.setup("fit")
    assert module._training_forward is not None
    assert list(module.state_dict()) == keys and not any("_orig_mod" in key for key in keys)
    assert "compile" not in module.hparams  # a run option: a checkpoint loaded for eval never compiles


@pytest.mark.slow
def test_compiled_training_matches_eager_and_its_checkpoint_loads_into_a_plain_module(tmp_path):
    """Two steps each from the same start: same losses; the checkpoint has the plain keys."""
    losses = {}
    modules = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        module = PRNModule(PRNet(encoder_weights=None), compile=compiled)
        module.log = lambda name, value, key=compiled, **kwargs: (
            losses.setdefault(key, []).append(float(value)) if name == "train/loss" else None
        )
        trainer = _fit(module, "32-true", 2)
        modules[compiled] = module
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    trainer.save_checkpoint(tmp_path / "compiled.ckpt")
    restored = PRNModule.load_from_checkpoint(tmp_path / "compiled.ckpt", map_location="cpu", weights_only=False)
    images = torch.rand(2, 3, SIZE, SIZE)
    torch.testing.assert_close(restored.eval()(images), modules[True].eval()(images))
