"""k-means prototypes: ratio semantics, determinism, shapes, the GPU option; faiss only where k-means runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from prn.models.kmeans import build_prototypes, inertia, kmeans_prototypes, number_of_prototypes, torch_kmeans


def _clustered_points(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0] * 8, [10.0] * 8, [-10.0] * 8])
    noise = torch.randn(60, 8, generator=generator) * 0.1
    return centres.repeat_interleave(20, dim=0) + noise


@pytest.mark.parametrize(
    ("n", "ratio", "expected"),
    [(100, 0.1, 10), (209, 0.1, 21), (7, 0.1, 1), (3, 0.01, 1), (25, 0.5, 12), (10, 1.0, 10)],
)
def test_number_of_prototypes_is_rounded_ratio_at_least_one(n: int, ratio: float, expected: int) -> None:
    assert number_of_prototypes(n, ratio) == expected


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5])
def test_bad_ratio_raises(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\]"):
        kmeans_prototypes(torch.rand(10, 4), ratio=ratio)


def test_ratio_one_returns_inputs_exactly() -> None:
    features = torch.rand(12, 5)
    assert torch.equal(kmeans_prototypes(features, ratio=1.0), features)


def test_kmeans_finds_the_clusters_with_k_from_ratio() -> None:
    points = _clustered_points()
    centroids = kmeans_prototypes(points, ratio=0.05, iterations=50)
    assert centroids.shape == (3, 8)
    found = sorted(centroids.mean(1).round().tolist())
    assert found == [-10.0, 0.0, 10.0]


def test_kmeans_is_deterministic_for_a_seed() -> None:
    features = torch.rand(80, 16)
    first = kmeans_prototypes(features, ratio=0.1, iterations=20, seed=3)
    again = kmeans_prototypes(features, ratio=0.1, iterations=20, seed=3)
    assert torch.equal(first, again)


def test_kmeans_rejects_non_matrix_input() -> None:
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        kmeans_prototypes(torch.rand(4, 3, 2))


def test_build_prototypes_keeps_map_shape() -> None:
    maps = [torch.rand(20, 4, 8, 8), torch.rand(20, 8, 4, 4)]
    prototypes = build_prototypes(maps, ratio=0.1, iterations=5)
    assert [tuple(p.shape) for p in prototypes] == [(2, 4, 8, 8), (2, 8, 4, 4)]


def test_kmeans_on_the_gpu_when_faiss_cannot_use_one_names_the_option_and_the_fix(monkeypatch) -> None:
    from prn.models import kmeans

    monkeypatch.setattr(kmeans, "faiss_gpu_available", lambda: False)
    assert kmeans.kmeans_uses_gpu(None) is False
    with pytest.raises(ValueError, match=r"prototypes.use_gpu.*make install"):
        kmeans_prototypes(torch.rand(10, 4), ratio=0.5, use_gpu=True)


def test_the_network_package_loads_without_faiss() -> None:
    code = "import sys, prn.models, prn.models.prn, prn.models.scorer; sys.exit('faiss' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=600).returncode == 0


def test_torch_kmeans_reaches_faiss_inertia_on_clustered_maps() -> None:
    """The two backends minimise the same objective: inertia within 1 % on data like normal maps (few, high-dimensional)."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(12, 4096, generator=generator) * 3.0
    points = centres[torch.randint(12, (209,), generator=generator)] + torch.randn(209, 4096, generator=generator)
    by_faiss = kmeans_prototypes(points, ratio=0.1, iterations=300, seed=0)
    by_torch = kmeans_prototypes(points, ratio=0.1, iterations=300, seed=0, backend="torch")
    assert by_torch.shape == by_faiss.shape == (21, 4096)
    assert inertia(points, by_torch) == pytest.approx(inertia(points, by_faiss), rel=0.01)


def test_torch_kmeans_is_seeded_fills_empty_clusters_and_rejects_unknown_backends() -> None:
    points = torch.cat([torch.zeros(30, 2), torch.ones(2, 2) * 10.0])  # 30 duplicates: most starts collide
    first = torch_kmeans(points, 4, iterations=20, seed=1)
    assert torch.equal(first, torch_kmeans(points, 4, iterations=20, seed=1))
    assert torch.isfinite(first).all() and inertia(points, first) < 1e-6
    with pytest.raises(ValueError, match="kmeans_backend"):
        kmeans_prototypes(points, ratio=0.5, backend="sklearn")
