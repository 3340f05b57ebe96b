import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from prn.models import PRNet
from prn.training.callbacks import PrototypeCallback
from prn.training.module import PRNModule


class _Images(Dataset):
    def __init__(self, count: int, size: int = 128):
        self.images = torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i]}


class _NormalsOnly(L.LightningDataModule):
    """The one method the callback needs, on real tensors."""

    def __init__(self, count: int):
        super().__init__()
        self.count = count

    def normal_dataloader(self):
        return DataLoader(_Images(self.count), batch_size=4)


def _module(**net):
    return PRNModule(PRNet(encoder_weights=None, **net))


def _trainer():
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)


def _run_setup(module, count, **callback):
    trainer = _trainer()
    trainer.strategy.connect(module)
    trainer.datamodule = _NormalsOnly(count)  # what trainer.fit(datamodule=...) sets before setup
    cb = PrototypeCallback(iterations=5, **callback)
    cb.setup(trainer, module, "fit")
    return cb


@pytest.mark.parametrize("ratio, count, expected", [(0.1, 20, 2), (0.1, 4, 1), (0.5, 10, 5), (1.0, 6, 6)])
def test_callback_fills_every_scale_with_ratio_times_n_prototypes(ratio, count, expected):
    module = _module()
    _run_setup(module, count, ratio=ratio)
    shapes = [tuple(p.shape) for p in module.net.prototypes.prototypes()]
    assert shapes == [(expected, 64, 32, 32), (expected, 128, 16, 16), (expected, 256, 8, 8)]


def test_torch_kmeans_backend_fills_the_same_shapes_on_the_training_device():
    module = _module()
    callback = _run_setup(module, 10, ratio=0.5, kmeans_backend="torch")
    shapes = [tuple(p.shape) for p in module.net.prototypes.prototypes()]
    assert shapes == [(5, 64, 32, 32), (5, 128, 16, 16), (5, 256, 8, 8)] and not callback.kmeans_on_gpu


def test_ratio_one_keeps_every_normal_feature_map_unclustered():
    module = _module()
    _run_setup(module, 3, ratio=1.0)
    images = _Images(3).images
    expected = module.net.prototype_features(images)
    for stored, maps in zip(module.net.prototypes.prototypes(), expected):
        torch.testing.assert_close(stored, maps)


@pytest.mark.parametrize("ratio, sources", [(1.0, [0, 1, 2, 3]), (0.5, [-1, -1])])
def test_callback_records_which_normal_image_each_prototype_is(ratio, sources):
    module = _module()
    _run_setup(module, 4, ratio=ratio)
    assert [s.tolist() for s in module.net.prototypes.sources()] == [sources] * 3


def test_patch_banks_record_their_source_images():
    module = _module(prototype_match="patch")
    _run_setup(module, 3, patch_ratio=0.05)
    for bank, sources in zip(module.net.prototypes.prototypes(), module.net.prototypes.sources()):
        assert sources.shape == (bank.shape[0],) and set(sources.tolist()) <= {0, 1, 2}


def test_existing_prototypes_are_not_recomputed():
    module = _module()
    _run_setup(module, 10, ratio=0.5)
    before = [p.clone() for p in module.net.prototypes.prototypes()]
    _run_setup(module, 20, ratio=0.1)
    for old, new in zip(before, module.net.prototypes.prototypes()):
        assert torch.equal(old, new)


def test_callback_skips_networks_without_prototypes_and_other_stages():
    module = _module(use_mp=False)
    _run_setup(module, 4)
    assert not module.net.needs_prototypes
    module = _module()
    trainer = _trainer()
    PrototypeCallback().setup(trainer, module, "test")
    assert not module.net.prototypes.is_fitted


def test_bad_ratio_names_the_option():
    with pytest.raises(ValueError, match="prototypes.ratio"):
        PrototypeCallback(ratio=0.0)


def test_prototypes_survive_a_checkpoint_round_trip(tmp_path):
    module = _module()
    _run_setup(module, 10, ratio=0.2)
    trainer = _trainer()
    trainer.strategy.connect(module)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    restored = PRNModule.load_from_checkpoint(path, map_location="cpu")
    for a, b in zip(module.net.prototypes.prototypes(), restored.net.prototypes.prototypes()):
        assert torch.equal(a, b)
    images = torch.rand(2, 3, 128, 128)
    module.eval(), restored.eval()
    torch.testing.assert_close(module(images), restored(images))


def test_training_timer_measures_the_loop_between_start_and_end():
    import time

    from prn.training.callbacks import TrainingTimer

    timer = TrainingTimer()
    timer.on_train_start(None, None)
    time.sleep(0.05)
    timer.on_train_end(None, None)
    assert 0.04 < timer.seconds < 1.0
    assert timer.seconds_per_step(5) == timer.seconds / 5 and timer.seconds_per_step(0) == timer.seconds


def test_patch_match_fills_a_coreset_of_location_vectors_and_survives_a_checkpoint(tmp_path):
    module = _module(prototype_match="patch")
    _run_setup(module, 4, patch_ratio=0.05, max_patches=30)
    shapes = [tuple(p.shape) for p in module.net.prototypes.prototypes()]
    assert shapes == [(30, 64), (30, 128), (13, 256)]  # min(30, 5 % of 4 images x h x w) per scale
    trainer = _trainer()
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    restored = PRNModule.load_from_checkpoint(tmp_path / "m.ckpt", map_location="cpu", weights_only=False)
    assert restored.net.prototypes.match == "patch"
    images = torch.rand(2, 3, 128, 128)
    module.eval(), restored.eval()
    torch.testing.assert_close(module(images), restored(images))


def _is_gpu_index(index) -> bool:
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, (faiss.IndexReplicas, faiss.IndexShards)):
        return all(_is_gpu_index(index.at(i)) for i in range(index.count()))
    return type(index).__name__.startswith("Gpu")


@pytest.mark.gpu
def test_prototypes_cluster_on_the_gpu_without_being_asked(monkeypatch):
    """On a GPU machine `make install` puts in faiss-gpu, and the callback's k-means (use_gpu unset) runs there."""
    import faiss

    from prn.models.kmeans import faiss_gpu_available

    assert faiss_gpu_available(), (
        f"faiss {faiss.__version__} sees no GPU although CUDA does: this is the faiss-cpu "
        "build; run `make install` on this machine (it installs faiss-gpu)"
    )
    built = []
    real_kmeans = faiss.Kmeans

    def recording_kmeans(*args, **kwargs):
        built.append(real_kmeans(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(faiss, "Kmeans", recording_kmeans)
    module = _module()
    callback = _run_setup(module, 20, ratio=0.1)
    assert callback.kmeans_on_gpu
    assert len(built) == 3 and all(_is_gpu_index(kmeans.index) for kmeans in built)
    assert [p.shape[0] for p in module.net.prototypes.prototypes()] == [2, 2, 2]


def test_pose_registration_is_fitted_first_and_the_prototypes_are_made_in_its_pose():
    module = _module(pose_search=30.0)
    _run_setup(module, 3, ratio=1.0)
    assert module.net.registration.is_fitted
    images = _Images(3).images
    registered = module.net.prototype_features(images)
    for stored, maps in zip(module.net.prototypes.prototypes(), registered):
        torch.testing.assert_close(stored, maps)
    unregistered = module.net.encoder.frozen_features(images)
    assert not torch.allclose(module.net.prototypes.prototypes()[0], unregistered[0])


def test_a_fitted_pose_template_is_kept_and_a_missing_one_is_fitted():
    module = _module(pose_search=30.0)
    _run_setup(module, 3, ratio=1.0)
    template = module.net.registration.template.clone()
    _run_setup(module, 6, ratio=1.0)  # everything fitted: nothing is recomputed
    assert torch.equal(module.net.registration.template, template)
    assert module.net.prototypes.prototypes()[0].shape[0] == 3
    fresh = _module(pose_search=30.0)
    fresh.net.prototypes.load_state_dict(module.net.prototypes.state_dict())  # prototypes without a template
    _run_setup(fresh, 3, ratio=1.0)
    assert fresh.net.registration.is_fitted
