"""The exported program runs without prn and gives the module's maps and scores."""

import json

import lightning as L
import torch

from prn.lightning.module import PRNModule
from prn.models import PRNet
from prn.tools.export import METADATA_FILE, export_checkpoint


def _checkpoint(path, size=128):
    torch.manual_seed(0)
    module = PRNModule(PRNet(encoder_weights=None), data_config={"name": "synthetic", "image_size": size}, top_k=10)
    module.net.set_prototypes([torch.randn(3, c, size // s, size // s) for c, s in [(64, 4), (128, 8), (256, 16)]])
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return module.eval()


def test_exported_program_matches_the_module_at_any_batch_size_and_carries_its_metadata(tmp_path):
    module = _checkpoint(tmp_path / "last.ckpt")
    metadata = export_checkpoint(tmp_path / "last.ckpt", tmp_path / "prn.pt2", max_batch=8)
    extra = {METADATA_FILE: ""}
    program = torch.export.load(tmp_path / "prn.pt2", extra_files=extra).module()
    assert json.loads(extra[METADATA_FILE]) == json.loads(json.dumps(metadata, default=str))
    assert metadata["input"]["shape"] == ["batch", 3, 128, 128] and metadata["top_k"] == 10
    for batch in (1, 3):
        images = torch.rand(batch, 3, 128, 128)
        with torch.no_grad():
            maps, scores = program(images)
            expected_maps, expected_scores = module.predict_maps_and_scores(images)
        torch.testing.assert_close(maps, expected_maps, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(scores, expected_scores, rtol=1e-4, atol=1e-5)
