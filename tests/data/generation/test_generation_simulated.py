import numpy as np
import pytest

from prn.data.generation.simulated import (
    MAX_VISIBLE_ATTEMPTS,
    SimulatedAnomalySource,
    TextureCache,
    list_textures,
)

SEEDS = range(20)


def _samples(source, pool, seeds=SEEDS):
    for seed in seeds:
        base = pool.normals[seed % len(pool.normals)]
        yield base, source(base, np.random.default_rng(seed))


@pytest.mark.parametrize(("hea", "hoa"), [(True, False), (False, True), (True, True)])
def test_outputs_change_only_inside_a_non_empty_mask(generation_pool, texture_dir, hea, hoa):
    source = SimulatedAnomalySource(generation_pool, str(texture_dir), use_heterologous=hea, use_homologous=hoa)
    for base, (image, mask) in _samples(source, generation_pool):
        assert image.dtype == np.uint8 and image.shape == base.image.shape
        assert mask.dtype == np.float32 and mask.shape == base.image.shape[:2] and mask.any()
        assert np.array_equal(image[mask == 0], base.image[mask == 0])


@pytest.mark.parametrize(("hea", "hoa"), [(True, False), (False, True)])
def test_target_area_keeps_masks_on_the_foreground(generation_pool, texture_dir, hea, hoa):
    source = SimulatedAnomalySource(generation_pool, str(texture_dir), use_heterologous=hea, use_homologous=hoa)
    for base, (_, mask) in _samples(source, generation_pool):
        assert not (mask.astype(bool) & ~base.foreground).any()


def test_without_target_area_masks_may_leave_the_foreground(generation_pool):
    source = SimulatedAnomalySource(generation_pool, None, use_heterologous=False, use_target_area=False)
    assert any((mask.astype(bool) & ~base.foreground).any() for base, (_, mask) in _samples(source, generation_pool))


def test_each_switch_removes_exactly_its_kind(generation_pool, texture_dir):
    only_hea = SimulatedAnomalySource(generation_pool, str(texture_dir), use_homologous=False)
    only_hoa = SimulatedAnomalySource(generation_pool, None, use_heterologous=False)
    both = SimulatedAnomalySource(generation_pool, str(texture_dir))
    for source in (only_hea, only_hoa, both):
        list(_samples(source, generation_pool, range(40)))
    assert set(only_hea.usage) == {"hea"} and set(only_hoa.usage) == {"hoa"}
    assert only_hoa.textures is None
    assert 10 < both.usage["hea"] < 30 and both.usage["hea"] + both.usage["hoa"] == 40


def test_heterologous_fill_comes_from_the_textures(generation_pool, texture_dir, monkeypatch):
    source = SimulatedAnomalySource(generation_pool, str(texture_dir), use_homologous=False)
    monkeypatch.setattr(source, "_homologous_fill", lambda *a: pytest.fail("HOA used with HOA off"))
    requested = []
    original = source.textures.get
    monkeypatch.setattr(source.textures, "get", lambda index, shape: requested.append(index) or original(index, shape))
    list(_samples(source, generation_pool))
    assert len(requested) == len(SEEDS) and set(requested) <= set(range(4))


def test_same_seed_same_sample(generation_pool, texture_dir):
    source = SimulatedAnomalySource(generation_pool, str(texture_dir))
    base = generation_pool.normals[1]
    first, second = source(base, np.random.default_rng(3)), source(base, np.random.default_rng(3))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_missing_dtd_dir_names_the_option_and_the_fix(generation_pool, tmp_path):
    with pytest.raises(ValueError, match=r"generation\.dtd_dir.*generation\.hea=false"):
        SimulatedAnomalySource(generation_pool, None)
    with pytest.raises(FileNotFoundError, match=r"generation\.dtd_dir"):
        SimulatedAnomalySource(generation_pool, str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="holds no images"):
        SimulatedAnomalySource(generation_pool, str(tmp_path))


def test_every_kind_off_is_rejected(generation_pool):
    with pytest.raises(ValueError, match="generation.hea, hoa, erase or lines"):
        SimulatedAnomalySource(generation_pool, None, use_heterologous=False, use_homologous=False)


def test_texture_cache_is_bounded_and_resizes(texture_dir):
    cache = TextureCache(list_textures(str(texture_dir)), max_items=2)
    for index in range(4):
        texture = cache.get(index, (30, 20))
        assert texture.shape == (30, 20, 3) and texture.dtype == np.uint8
    assert len(cache) == 2
    assert cache.get(3, (30, 20)) is cache.get(3, (30, 20))


def test_visible_only_labels_and_keeps_only_what_visibly_changed(generation_pool) -> None:
    source = SimulatedAnomalySource(generation_pool, use_heterologous=False, visible_only=True)
    rng = np.random.default_rng(0)
    for normal in generation_pool.normals:
        image, mask = source(normal, rng)
        labelled = mask > 0
        assert labelled.sum() >= 16
        assert np.array_equal(image[~labelled], normal.image[~labelled])


def test_visible_only_drops_a_paste_that_changed_nothing_after_redrawing(generation_pool, monkeypatch) -> None:
    source = SimulatedAnomalySource(generation_pool, use_heterologous=False, visible_only=True)
    blob = np.zeros(generation_pool.image_size, dtype=bool)
    blob[20:40, 20:40] = True
    calls = []
    monkeypatch.setattr(source, "_pasted", lambda kind, base, rng: calls.append(kind) or (base.image.copy(), blob))
    normal = generation_pool.normals[0]
    image, mask = source(normal, np.random.default_rng(0))
    assert mask.sum() == 0 and np.array_equal(image, normal.image)  # the paper's rule would label 400 pixels
    assert calls == ["hoa"] * MAX_VISIBLE_ATTEMPTS
