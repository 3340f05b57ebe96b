"""Which images a report shows, how they are scored again, and how they are drawn."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from prn.data.eval_set import EvalImageSet
from prn.data.records import Record
from prn.reporting.examples import Example, example_panels, score_examples, select_examples, strip_jpeg


def row(path: str, label: int, score: float, defect_type: str) -> dict:
    return {"path": path, "label": label, "score": score, "defect_type": defect_type}


ROWS = [
    row("good/1.png", 0, 0.2, "good"),
    row("good/0.png", 0, 0.9, "good"),
    row("good/2.png", 0, 0.5, "good"),
    row("crack/1.png", 1, 0.1, "crack"),
    row("crack/0.png", 1, 0.8, "crack"),
    row("dent/0.png", 1, 0.3, "dent"),
]


def test_worst_images_and_the_first_of_each_type_are_selected() -> None:
    selection = select_examples(ROWS, worst=2, per_type=1)
    assert selection.false_positives == [1, 2], "good images, highest score first"
    assert selection.false_negatives == [3, 5], "anomalous images, lowest score first"
    assert selection.by_type == {"good": [1], "crack": [4], "dent": [5]}, "first by path, good first"
    assert selection.indices() == [1, 2, 3, 5, 4], "each image once"


class MeanBrightness(nn.Module):
    """A stand-in network: the map is the image's mean over channels, the score its maximum."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.calls = 0

    def predict_maps_and_scores(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert not self.training, "examples must be scored in eval mode"
        self.calls += 1
        maps = images.mean(dim=1, keepdim=True) * self.weight
        return maps, maps.flatten(1).amax(dim=1)


def test_examples_are_scored_again_in_eval_mode_and_keyed_by_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) for _ in range(5)]
    records = [Record(tmp_path / f"{i}.png", int(i > 1), None, "good" if i <= 1 else "crack") for i in range(5)]
    masks = [None, None, np.eye(8, dtype=bool), np.ones((8, 8), bool), np.zeros((8, 8), bool)]
    dataset = EvalImageSet(records, images, masks)
    module = MeanBrightness().train()
    wanted = [str(records[i].image_path) for i in (4, 0, 2)]
    examples = score_examples(module, dataset, wanted, batch_size=2)
    assert list(examples) == wanted and module.calls == 2 and module.training, "two batches, training mode restored"
    crack = examples[wanted[2]]
    assert crack.defect_type == "crack" and crack.label == 1 and np.array_equal(crack.mask, np.eye(8, dtype=bool))
    np.testing.assert_allclose(crack.anomaly_map, images[2].mean(axis=2) / 255, atol=1e-5)
    assert crack.score == pytest.approx(float(crack.anomaly_map.max()), abs=1e-6) and np.array_equal(
        crack.image, images[2]
    )
    assert (
        score_examples(module, EvalImageSet(records, images, masks, with_masks=False), wanted[:1])[wanted[0]].mask
        is None
    )
    with pytest.raises(KeyError, match="not in the test set"):
        score_examples(module, dataset, ["elsewhere.png"])


def _example(mask: np.ndarray | None) -> Example:
    anomaly_map = np.zeros((32, 32), np.float32)
    anomaly_map[8:16, 8:16] = 0.9
    return Example("crack/0.png", "crack", 1, 0.9, np.full((32, 32, 3), 90, np.uint8), anomaly_map, mask)


def test_panels_show_image_map_overlay_and_truth() -> None:
    mask = np.zeros((32, 32), bool)
    mask[10:14, 10:14] = True
    image, heat, blended, truth = example_panels(_example(mask))
    assert tuple(heat[0, 0]) == (0, 0, 255) and heat[12, 12, 0] > 200, "absolute colours: 0 blue, 0.9 red"
    assert tuple(blended[0, 0]) == (90, 90, 90), "a zero map leaves the image as it is"
    assert truth[12, 12].tolist() == [255, 255, 255] and truth[0, 0].tolist() == [0, 0, 0]
    outlined = example_panels(_example(mask), pixel_threshold=0.5)[2]
    assert tuple(outlined[8, 8]) == (255, 255, 255) and not np.array_equal(outlined, blended), (
        "the predicted defect is outlined"
    )
    no_truth = example_panels(_example(None))[3]
    assert no_truth.shape == (32, 32, 3) and len(np.unique(no_truth.reshape(-1, 3), axis=0)) > 1, (
        "a labelled grey panel"
    )


def test_strips_put_the_panels_side_by_side_at_most_256_pixels_each() -> None:
    panels = [np.zeros((512, 512, 3), np.uint8)] * 4
    strip = Image.open(io.BytesIO(strip_jpeg(panels)))
    assert strip.format == "JPEG" and strip.size == (4 * 256 + 3 * 4, 256)
