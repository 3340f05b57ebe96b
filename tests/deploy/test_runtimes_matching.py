"""Every prototype matching exports to ONNX with the checkpoint's maps and scores.

Apart from tests/deploy/test_runtimes.py, whose tests share the session's tiny export (one xdist worker
builds it), so that these exports of their own run on the other worker.
"""

import numpy as np
import pytest
import torch
from tiny_model import PARITY_TOLERANCE, save_checkpoint, tiny_module

from prn.deploy import Inferencer
from prn.tools.export import export_checkpoint


@pytest.mark.parametrize(
    ("match", "window", "memory", "sigma", "weight"),
    [  # the own-parts graph (window, memory, fused map) in make test; each other branch in make test-all (1-2 min each)
        pytest.param("patch", 0, False, 0.0, 0.0, marks=pytest.mark.slow),
        pytest.param("location", 0, False, 0.0, 0.0, marks=pytest.mark.slow),
        pytest.param("location", 2, False, 0.0, 0.0, marks=pytest.mark.slow),
        pytest.param("location", 2, True, 4.0, 0.0, marks=pytest.mark.slow),
        ("location", 2, True, 0.0, 0.5),
    ],
)
def test_other_prototype_matching_exports_with_the_same_parity(tmp_path, match, window, memory, sigma, weight):
    module = tiny_module(
        (128, 128),
        prototype_match=match,
        location_window=window,
        patch_memory=memory,
        map_sigma=sigma,
        memory_weight=weight,
    )
    export_checkpoint(
        save_checkpoint(module, tmp_path / "last.ckpt"), tmp_path / "prn.onnx", format="onnx", max_batch=4
    )
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected_maps, expected_scores = (t.numpy() for t in module.predict_maps_and_scores(images))
    maps, scores = Inferencer(tmp_path / "prn.onnx").run(images.numpy())
    assert expected_maps.std() > 0.05  # spread 500x the tolerance (the fused map is narrower than the network's)
    np.testing.assert_allclose(maps, expected_maps, rtol=0, atol=PARITY_TOLERANCE)
    np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=PARITY_TOLERANCE)
