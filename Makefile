# Two commands matter: `make train` (main job on the embedded synthetic dataset) and
# `make test`. Both create .venv and install the pinned packages on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: install train eval predict test test-all preview benchmark baselines clean-logs

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

train: install ## train + test PRN (default: synthetic demo); pass Hydra overrides in ARGS="..."
	$(PY) src/train.py $(ARGS)

eval: install ## evaluate a checkpoint: make eval ARGS="ckpt_path=..."
	$(PY) src/eval.py $(ARGS)

predict: install ## score new images: make predict ARGS="ckpt_path=... input=folder/ threshold=0.5"
	$(PY) src/predict.py $(ARGS)

test: install ## fast suite (slow-marked tests excluded)
	$(PY) -m pytest -m "not slow" -q $(ARGS)

test-all: install ## everything, slow tests included
	$(PY) -m pytest -q $(ARGS)

preview: install ## PNG grid of generated anomalies: make preview ARGS="dataset=mvtec category=bottle root=..."
	$(VENV)/bin/prn-preview $(ARGS)

benchmark: install ## model speed, data-pipeline speed and metric memory on this machine
	$(PY) benchmarks/model_speed.py --batch 8 --size 256
	$(PY) benchmarks/data_pipeline.py -- $(ARGS)
	$(PY) benchmarks/metrics_memory.py

baselines: install ## anomalib PatchCore beside PRN on prn's split: make baselines ARGS="--root ... --category bottle --weights ... [--prn-results .../results.json]"
	$(PY) benchmarks/baselines.py $(ARGS)

clean-logs:
	rm -rf logs/train logs/eval
include make/tables.mk
