"""End to end: train + test on the synthetic dataset, then evaluate the checkpoint."""

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prn.checkpoints import install_saved_prototypes, module_from_checkpoint
from prn.data.base import SELECTION_DRAWS
from prn.data.errors import DatasetError
from prn.data.generation.held_out import HELD_OUT_KINDS
from prn.data.image_io import load_image, parse_image_size
from prn.data.training import image_tensor
from prn.pipeline import evaluate, train
from prn.prediction.job import predict
from prn.utils.hardware import training_precision
from prn.utils.instantiation import build_module, instantiate_group, print_lightning_messages_once


@pytest.fixture(scope="module")
def trained(tmp_path_factory, compose_cfg, tiny):
    root = tmp_path_factory.mktemp("e2e")
    cfg = compose_cfg("train", [f"paths.output_dir={root / 'run'}", f"paths.data_dir={root / 'data'}", *tiny])
    return cfg, train(cfg)


def test_train_writes_results_checkpoint_split_and_config(trained):
    cfg, result = trained
    run_dir = Path(cfg.paths.output_dir)
    saved = json.loads((run_dir / "results.json").read_text())
    assert set(saved["metrics"]) == {"image_auroc", "pixel_auroc", "pixel_aupro", "pixel_ap"}
    assert all(0.0 <= v <= 1.0 for v in saved["metrics"].values())
    assert saved["steps"] == 4 and saved["seed"] == 0 and saved["git_commit"]
    assert saved["precision"] == training_precision("auto", cfg.trainer.accelerator)  # what `auto` chose here
    assert "random" in saved["encoder_weights"] and any("random" in n for n in saved["notes"])
    assert "| synthetic | tiles |" in (run_dir / "results.md").read_text()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "split.json").is_file() and (run_dir / "config.yaml").is_file()


def test_held_out_normals_calibrate_a_threshold_that_the_test_report_uses(trained):
    """The demo holds out a tenth of its normals (val_normals=0.1); they fit the OK/NG threshold, never the test set."""
    cfg, result = trained
    split = json.loads((Path(cfg.paths.output_dir) / "split.json").read_text())
    assert split["counts"]["val_normal"] == 2 and not set(split["val_normal"]) & set(split["train_normal"])
    assert result["calibration"]["num_images"] == 2 and result["calibration"]["fpr"] == 0.01
    decided = result["at_threshold"]
    assert decided["image_threshold"] == result["calibration"]["image_threshold"]
    assert result["threshold"] == {
        "image_threshold": decided["image_threshold"],
        "source": "calibrated on held-out normals",
    }
    assert sum(decided["confusion"].values()) == split["counts"]["test"]
    anomalous_types = {Path(name).parent.name for name in split["test"]} - {"good"}
    assert set(decided["recall_per_defect_type"]) == anomalous_types and anomalous_types


def test_score_is_chosen_on_held_out_normals_and_held_out_anomalies_and_travels_with_the_checkpoint(trained):
    cfg, result = trained
    chosen = result["score"]["chosen_on_held_out"]
    # SELECTION_DRAWS anomalies of the held-out kinds on each held-out normal (the tiles all change visibly)
    assert chosen["num_normals"] == 2 and chosen["num_anomalies"] == 2 * SELECTION_DRAWS
    assert len(chosen["candidates"]) == 16
    assert (result["score"]["map_sigma"], result["score"]["top_k"]) == (chosen["map_sigma"], chosen["top_k"])
    module = module_from_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert (module.hparams.map_sigma, module.hparams.top_k) == (chosen["map_sigma"], chosen["top_k"])
    assert module.score_choice.to_dict() == chosen


def test_the_score_study_rebuilds_the_choice_and_the_metrics_of_training(trained, tmp_path):
    """benchmarks/score_choice.py rebuilds the selection set and the test maps from the checkpoint alone: its
    evidence rule must choose what training chose, and its test row must be the training's test metrics."""
    cfg, result = trained
    run_dir, out = Path(cfg.paths.output_dir), tmp_path / "study.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "score_choice.py"
    done = subprocess.run(
        [sys.executable, str(script), str(run_dir), "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rules = json.loads(out.read_text())[0]["rules"]
    evidence = rules["evidence"]
    kinds = set(evidence["validation_by_kind"])  # each choice read per held-out kind, and the rule without each
    assert kinds and kinds <= set(HELD_OUT_KINDS)
    assert len(kinds) == 1 or all(f"evidence without {kind}" in rules for kind in kinds)
    chosen = result["score"]["chosen_on_held_out"]
    assert evidence["choice"] == [chosen["map_sigma"], chosen["top_k"], chosen["memory_weight"]]
    assert {key: evidence["test"][key] for key in result["metrics"]} == pytest.approx(result["metrics"], abs=1e-5)
    assert (run_dir / "score_study.pt").is_file()


def test_checkpoint_carries_prototypes(trained):
    cfg, _ = trained
    state = torch.load(
        Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )["state_dict"]
    prototypes = [k for k in state if "prototypes" in k]
    assert prototypes and all(state[k].shape[0] >= 1 for k in prototypes)


def test_eval_reproduces_the_training_runs_metrics(trained, tmp_path, compose_cfg):
    cfg, result = trained
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    evaluated = evaluate(compose_cfg("eval", [f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path}", "threshold=null"]))
    assert evaluated["category"] == "tiles"
    for key, value in result["metrics"].items():
        assert evaluated["metrics"][key] == pytest.approx(value, abs=1e-6)
    # threshold=null means no decision in eval as in predict, though the checkpoint is calibrated
    assert evaluated["at_threshold"] is None and evaluated["threshold"]["source"] == "none: threshold=null"


def test_eval_names_a_bad_threshold_before_any_work(trained, tmp_path, compose_cfg):
    cfg, _ = trained
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match="threshold='high' must be auto"):
        evaluate(compose_cfg("eval", [f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path}", "threshold=high"]))
    assert not (tmp_path / "results.json").exists()


def test_eval_names_a_missing_checkpoint(tmp_path, compose_cfg):
    with pytest.raises(FileNotFoundError, match="ckpt_path"):
        evaluate(compose_cfg("eval", [f"ckpt_path={tmp_path / 'nope.ckpt'}", f"paths.output_dir={tmp_path}"]))


def test_resume_goes_on_from_the_checkpoint_with_its_prototypes(trained, tmp_path, compose_cfg, tiny):
    cfg, _ = trained
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed_cfg = compose_cfg(
        "train",
        [
            *tiny,
            f"paths.data_dir={cfg.paths.data_dir}",
            f"paths.output_dir={tmp_path}",
            f"resume={ckpt}",
            "max_steps=6",
            "epochs=3",
        ],
    )
    result = train(resumed_cfg)
    assert result["steps"] == 6 and result["resumed_from"] == str(ckpt)
    assert result["prototype_seconds"] == 0.0, "prototypes must come from the checkpoint, not a new k-means"
    before = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    after = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    for key in (k for k in before if "prototypes" in k):
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)
    trained_key = next(k for k in before if k.startswith("net.decoder") and k.endswith("weight"))
    assert not torch.equal(after[trained_key], before[trained_key]), "two more steps must change the decoder"


def test_resume_names_a_missing_checkpoint(tmp_path, compose_cfg):
    with pytest.raises(FileNotFoundError, match="resume="):
        train(compose_cfg("train", [f"paths.output_dir={tmp_path}", f"resume={tmp_path / 'nope.ckpt'}"]))
    assert not any(tmp_path.iterdir()), "nothing is written before the checkpoint is checked"


@pytest.mark.parametrize(("job", "option"), [("eval", "ckpt_path"), ("train", "resume")])
def test_a_file_that_is_no_checkpoint_fails_before_any_work_naming_the_option(tmp_path, compose_cfg, job, option):
    """``src/eval.py ckpt_path=notes.txt`` ended in ``_pickle.UnpicklingError: invalid load key``."""
    notes = tmp_path / "notes.txt"
    notes.write_text("lr 1e-4 looked best\n")
    run = tmp_path / "run"
    cfg = compose_cfg(job, [f"paths.output_dir={run}", f"{option}={notes}"])
    with pytest.raises(ValueError, match=rf"{option}={notes} is not a PyTorch checkpoint .*checkpoints/last.ckpt"):
        (evaluate if job == "eval" else train)(cfg)
    assert not run.exists(), "nothing is written before the checkpoint is checked"


def test_a_missing_dtd_folder_fails_training_before_the_model_or_any_image(tmp_path, compose_cfg, tiny, monkeypatch):
    """HEA on and no DTD folder was reported only after the foreground estimation (86 s on MVTec)."""

    def too_late(cfg):
        raise AssertionError("the DTD folder must be checked before the model is built and images are decoded")

    monkeypatch.setattr("prn.pipeline.build_module", too_late)
    overrides = [*tiny, f"paths.output_dir={tmp_path}", "generation.hea=true", "generation.dtd_dir=/no/such/dir"]
    with pytest.raises(FileNotFoundError, match=r"generation\.dtd_dir=/no/such/dir does not exist; point"):
        train(compose_cfg("train", overrides))


def test_predict_scores_every_image_of_a_folder_like_the_test_does(trained, tmp_path, compose_cfg):
    cfg, _ = trained
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    folder = Path(cfg.paths.data_dir) / "synthetic" / "tiles" / "test"
    images = sorted(p for p in folder.rglob("*.png"))
    result = predict(
        compose_cfg(
            "predict", [f"ckpt_path={ckpt}", f"input={folder}", f"paths.output_dir={tmp_path}", "threshold=0.5"]
        )
    )
    assert result["images"] == len(images)
    rows = list(csv.DictReader((tmp_path / "scores.csv").open()))
    assert [Path(r["path"]) for r in rows] == images
    module = module_from_checkpoint(ckpt).eval()
    size = parse_image_size(module.hparams.data_config["image_size"])
    with torch.no_grad():
        _, expected = module.predict_maps_and_scores(image_tensor(load_image(images[0], size))[None])
    assert float(rows[0]["score"]) == pytest.approx(float(expected[0]), abs=1e-6)
    assert all(r["anomalous"] == str(int(float(r["score"]) >= 0.5)) for r in rows)
    assert Path(rows[0]["map"]).is_file() and Path(rows[0]["overlay"]).is_file()


def test_predict_decides_with_the_calibrated_thresholds_and_skips_a_broken_file(trained, tmp_path, compose_cfg):
    cfg, result = trained
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    folder = tmp_path / "line"
    good = sorted((Path(cfg.paths.data_dir) / "synthetic" / "tiles" / "test").rglob("*.png"))[:3]
    for index, image in enumerate(good):
        (folder / f"{index}.png").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.png").write_bytes(image.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match="broken.png"):  # the default stays fail-fast, naming the file
        predict(
            compose_cfg("predict", [f"ckpt_path={ckpt}", f"input={folder}", f"paths.output_dir={tmp_path / 'fail'}"])
        )
    out = tmp_path / "skip"
    outcome = predict(
        compose_cfg("predict", [f"ckpt_path={ckpt}", f"input={folder}", f"paths.output_dir={out}", "on_error=skip"])
    )
    assert outcome["images"] == 3 and outcome["skipped"] == 1
    assert outcome["image_threshold"] == result["calibration"]["image_threshold"]
    skipped = list(csv.DictReader((out / "skipped.csv").open()))
    assert [Path(row["path"]).name for row in skipped] == ["broken.png"] and "broken.png" in skipped[0]["error"]
    rows = list(csv.DictReader((out / "scores.csv").open()))
    threshold = result["calibration"]["image_threshold"]
    assert [row["decision"] for row in rows] == ["NG" if float(row["score"]) >= threshold else "OK" for row in rows]
    mask = np.asarray(Image.open(rows[0]["mask"]))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}


def test_predict_names_a_missing_input(trained, tmp_path, compose_cfg):
    cfg, _ = trained
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    with pytest.raises(DatasetError, match="input="):
        predict(
            compose_cfg(
                "predict", [f"ckpt_path={ckpt}", f"input={tmp_path / 'nope'}", f"paths.output_dir={tmp_path / 'out'}"]
            )
        )
    assert not (tmp_path / "out").exists()


def test_one_override_swaps_the_optimiser_and_adds_a_scheduler(compose_cfg, tiny):
    cfg = compose_cfg(
        "train",
        [
            *tiny,
            "model.optimizer._target_=torch.optim.AdamW",
            "+model.scheduler._target_=torch.optim.lr_scheduler.StepLR",
            "+model.scheduler._partial_=true",
            "+model.scheduler.step_size=2",
            "paths.output_dir=/tmp/prn-compose",
        ],
    )
    configured = build_module(cfg).configure_optimizers()
    assert type(configured["optimizer"]) is torch.optim.AdamW and configured["optimizer"].param_groups[0]["lr"] == 1e-4
    assert isinstance(configured["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)


def test_callbacks_come_from_config_and_one_override_switches_one_off(compose_cfg, tiny):
    default = instantiate_group(compose_cfg("train", [*tiny, "paths.output_dir=/tmp/prn-compose"]).callbacks)
    assert {type(c).__name__ for c in default} == {
        "PrototypeCallback",
        "ModelCheckpoint",
        "TrainingTimer",
        "RichProgressBar",
        "WandbReportCallback",
        "RunReport",
    }
    for override in ("~callbacks.timer", "callbacks.timer=null"):
        fewer = instantiate_group(
            compose_cfg("train", [*tiny, override, "paths.output_dir=/tmp/prn-compose"]).callbacks
        )
        assert "TrainingTimer" not in {type(c).__name__ for c in fewer} and len(fewer) == len(default) - 1


def test_lightning_messages_go_to_the_root_handlers_once_they_exist(monkeypatch):
    lightning_logger = logging.getLogger("lightning")
    own_console = logging.StreamHandler()
    monkeypatch.setattr(lightning_logger, "handlers", [own_console])
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    print_lightning_messages_once()
    assert lightning_logger.handlers == [own_console], "without root handlers (a notebook) Lightning keeps its console"
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    print_lightning_messages_once()
    assert lightning_logger.handlers == []


def test_resume_keeps_the_saved_patch_memory(tmp_path, compose_cfg, tiny):
    overrides = [
        *tiny,
        f"paths.output_dir={tmp_path}",
        "prototypes.match=location",
        "prototypes.patch_memory=true",
    ]
    saved = build_module(compose_cfg("train", overrides))
    saved.net.patch_memory.set_memory(torch.rand(7, 384), torch.arange(7), distance_scale=1.5)
    ckpt = tmp_path / "last.ckpt"
    as_lightning_writes_it = {"state_dict": saved.state_dict(), "hyper_parameters": dict(saved.hparams)}
    torch.save(as_lightning_writes_it, ckpt)
    resumed = build_module(compose_cfg("train", overrides))
    install_saved_prototypes(resumed, ckpt)
    memory = resumed.net.patch_memory
    assert torch.equal(memory.memory, saved.net.patch_memory.memory) and memory.sources.tolist() == list(range(7))
    assert float(memory.distance_scale) == 1.5
