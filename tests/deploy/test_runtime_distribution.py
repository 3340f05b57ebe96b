"""deploy/ builds prn-deploy: the torch-free part of prn, which scores an ONNX model on its own."""

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNTIME_MODULES = {
    "prn/__init__.py",
    "prn/calibration.py",
    "prn/data/__init__.py",
    "prn/data/errors.py",
    "prn/data/image_io.py",
    "prn/data/records.py",
    "prn/deploy/__init__.py",
    "prn/deploy/__main__.py",
    "prn/deploy/images.py",
    "prn/deploy/inferencer.py",
    "prn/deploy/metadata.py",
    "prn/deploy/runtimes.py",
    "prn/serve/__init__.py",
    "prn/serve/__main__.py",
    "prn/serve/app.py",
    "prn/serve/batching.py",
    "prn/serve/decisions.py",
    "prn/serve/page.html",
    "prn/serve/service.py",
    "prn/serve/uploads.py",
}


def _build_wheel(folder: Path) -> Path:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(folder),
            str(REPO / "deploy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return next(folder.glob("prn_deploy-*.whl"))


def test_the_runtime_wheel_holds_only_the_torch_free_modules_and_scores_with_them_alone(tiny_exports, tmp_path):
    wheel = _build_wheel(tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as archive:
        modules = {name for name in archive.namelist() if name.startswith("prn/")}
        requirements = archive.read(next(n for n in archive.namelist() if n.endswith("METADATA"))).decode()
        archive.extractall(tmp_path / "site")
    assert modules == RUNTIME_MODULES
    always = sorted(
        line.split()[1]
        for line in requirements.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    )
    assert always == ["numpy>=1.26", "pillow>=10"]  # each runtime, torch included, only as an extra
    # Without site processing, `prn` can only come from the unpacked wheel; third-party packages
    # come from this environment, where torch, lightning and hydra are blocked.
    code = (
        "import sys\n"
        "for name in ('torch', 'lightning', 'hydra', 'omegaconf'):\n"
        "    sys.modules[name] = None\n"
        "import numpy as np, prn.deploy\n"
        f"assert prn.deploy.__file__.startswith({str(tmp_path / 'site')!r}), prn.deploy.__file__\n"
        f"prediction = prn.deploy.Inferencer({str(tiny_exports.models['onnx'])!r}).predict(np.zeros((40, 50, 3), np.uint8))[0]\n"
        "print(prediction.score, prediction.is_anomalous, prediction.defect_mask.shape)\n"
        # prn-serve from the same wheel: the service scores a PNG without torch
        "import io, PIL.Image, prn.serve.app as app, prn.serve.decisions as d, prn.serve.service as s\n"
        "from prn.serve.batching import BatchingOptions\n"
        "from prn.serve.uploads import UploadLimits\n"
        "from fastapi.testclient import TestClient\n"
        f"service = s.InspectionService(prn.deploy.Inferencer({str(tiny_exports.models['onnx'])!r}), "
        f"d.DecisionLog({str(tmp_path / 'log.sqlite')!r}))\n"
        "png = io.BytesIO(); PIL.Image.new('RGB', (50, 40)).save(png, 'PNG')\n"
        "with TestClient(app.create_app(service, UploadLimits(), BatchingOptions())) as client:\n"
        "    answer = client.post('/v1/score', content=png.getvalue(), headers={'Content-Type': 'image/png'})\n"
        "print(answer.status_code, answer.json()['decision'])\n"
    )
    path = f"{tmp_path / 'site'}:{sysconfig.get_paths()['purelib']}:{sysconfig.get_paths()['platlib']}"
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[2] == "(40," and done.stdout.split()[1] in ("True", "False")
    assert done.stdout.split()[-2] == "200" and done.stdout.split()[-1] in ("OK", "NG")
