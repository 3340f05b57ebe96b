import torch

from prn.models import PRNet
from prn.models.kmeans import build_prototypes
from prn.training.module import PRNModule


def _module():
    module = PRNModule(PRNet(encoder_weights=None, use_mp=False), top_k=10)
    return module


def _batch(n=2, size=128):
    mask = torch.zeros(n, 1, size, size)
    mask[0, :, 10:30, 10:30] = 1
    labels = [1] + [0] * (n - 1)
    return {
        "image": torch.rand(n, 3, size, size),
        "mask": mask,
        "label": torch.tensor(labels),
        "path": [f"img{i}.png" for i in range(n)],
        "defect_type": ["crack" if label else "good" for label in labels],
    }


def test_forward_is_a_probability_map_at_input_size():
    maps = _module()(torch.rand(2, 3, 128, 128))
    assert maps.shape == (2, 1, 128, 128) and maps.min() >= 0 and maps.max() <= 1


def test_training_step_returns_a_differentiable_loss_and_steps_lower_it():
    torch.manual_seed(0)
    module = _module()
    optimizer = module.configure_optimizers()
    batch = _batch()
    losses = []
    for _ in range(5):
        loss = module.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_training_step_keeps_each_sample_from_matching_its_own_base_image():
    net = PRNet(encoder_weights=None, msa_depth=1)
    images = torch.rand(3, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    net.set_prototypes(build_prototypes(net.prototype_features(images), ratio=1.0), [torch.arange(3)] * 3)
    batch = {"image": images, "mask": torch.zeros(3, 1, 128, 128), "base": torch.tensor([2, 1, -1])}
    seen = []
    original = net.prototypes.residuals
    net.prototypes.residuals = lambda features, exclude=None: seen.append(exclude) or original(features, exclude)
    PRNModule(net).training_step(batch, 0)
    PRNModule(net, leave_self_out=False).training_step(batch, 0)
    assert seen[0].tolist() == [2, 1, -1] and seen[1] is None
    residual = original(net.prototype_features(images), seen[0])[0]
    assert residual[0].sum() == 0 and residual[1].sum() > 0 and residual[2].sum() == 0, (
        "only sample 1 (built on image 1) is kept from itself"
    )


def test_optimizer_is_adam_with_paper_settings_over_trainable_parameters_only():
    module = _module()
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    group = optimizer.param_groups[0]
    assert group["lr"] == 1e-4 and group["weight_decay"] == 1e-2
    assert all(p.requires_grad for p in group["params"])
    frozen = [p for p in module.net.parameters() if not p.requires_grad]
    assert frozen and not any(p is q for p in frozen for q in group["params"])


def test_image_score_is_mean_of_top_k_pixels():
    module = _module()
    maps, scores = module.predict_maps_and_scores(torch.rand(2, 3, 128, 128))
    expected = maps.flatten(1).topk(10, dim=1).values.mean(1)
    torch.testing.assert_close(scores, expected)


def test_test_epoch_produces_the_four_metrics():
    module = _module()
    module.on_test_epoch_start()
    for _ in range(2):
        batch = _batch(4)
        batch["label"] = torch.tensor([1, 0, 0, 0])
        module.test_step(batch, 0)
    module.log = lambda *a, **k: None  # no trainer attached in this unit test
    module.on_test_epoch_end()
    assert set(module.test_results) == {"image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap"}
    assert [row["defect_type"] for row in module.test_rows] == ["crack", "good", "good", "good"] * 2
    assert all(isinstance(row["score"], float) for row in module.test_rows)


def test_calibration_travels_with_the_checkpoint(tmp_path):
    """Thresholds fitted after training are saved in the checkpoint and come back on load."""
    from prn.calibration import fit_calibration
    from prn.training import PRNModule

    module = _module()
    scores, maxima = module.score_held_out_normals([{"image": torch.rand(3, 3, 128, 128)}])
    assert len(scores) == len(maxima) == 3 and all(
        m >= s for s, m in zip(scores, maxima)
    )  # a top-k mean never exceeds the max
    module.calibration = fit_calibration(scores, maxima, fpr=0.1)
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    restored = PRNModule(net_config=module.hparams.net_config)
    restored.on_load_checkpoint(checkpoint)
    assert restored.calibration == module.calibration
    restored.on_load_checkpoint({})
    assert restored.calibration is None


def test_maps_are_float32_and_identical_under_bf16_autocast():
    """trainer=gpu trains in bf16-mixed; the metrics must still see full-precision maps."""
    torch.manual_seed(0)
    module = _module().eval()
    images = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        reference, reference_scores = module.predict_maps_and_scores(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            maps, scores = module.predict_maps_and_scores(images)
    assert maps.dtype == torch.float32
    torch.testing.assert_close(maps, reference, rtol=0, atol=0)
    torch.testing.assert_close(scores, reference_scores, rtol=0, atol=0)


def test_channels_last_converts_the_weights_and_keeps_the_maps():
    torch.manual_seed(0)
    module = _module().eval()
    images = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        reference = module(images)
        module.hparams.channels_last = True
        module.setup("test")
        maps = module(images)
    conv_weights = [p for p in module.net.parameters() if p.ndim == 4]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)
    torch.testing.assert_close(maps, reference, rtol=1e-4, atol=1e-5)


def test_a_module_with_patch_memory_chooses_a_memory_weight_and_scores_with_it(tmp_path):
    """Selection scores every memory weight; the choice sets the hyper-parameter that predictions, exports and
    checkpoints use."""
    from tiny_model import save_checkpoint, tiny_module

    from prn.models.scorer import map_components
    from prn.training import PRNModule

    module = tiny_module((128, 128), prototype_match="location", location_window=2, patch_memory=True)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 128, 128, generator=generator)
    masks = torch.zeros(6, 1, 128, 128)
    masks[3:, :, 40:80, 40:80] = 1
    loader = [{"image": images, "mask": masks, "label": torch.tensor([0, 0, 0, 1, 1, 1])}]
    choice = module.choose_score(loader)
    assert {c["memory_weight"] for c in choice.candidates} == {0.5, 0.75, 1.0}
    chosen = choice.__class__(**{**choice.to_dict(), "memory_weight": 0.75, "map_sigma": 0.0})
    module.apply_score_choice(chosen)
    assert module.memory_weight == 0.75 and module.scorer().memory_weight == 0.75
    with torch.no_grad():
        network, memory = map_components(module.net, images[:2])
        maps, _ = module.predict_maps_and_scores(images[:2])
    torch.testing.assert_close(maps, 0.25 * network + 0.75 * memory)
    restored = PRNModule.load_from_checkpoint(save_checkpoint(module, tmp_path / "last.ckpt"), weights_only=True)
    assert restored.memory_weight == 0.75 and restored.score_choice.memory_weight == 0.75
