# Two commands matter: `make train` (main job on the embedded synthetic dataset) and
# `make test`. Both create .venv and install the pinned packages on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# FAISS build: faiss-gpu (CUDA 12 wheels, pinned in constraints.txt) where nvidia-smi lists a GPU,
# faiss-cpu elsewhere; `make install FAISS=faiss-cpu` forces the CPU build. The stamp names the
# build, so a venv that moves between the two kinds of machine is reinstalled.
ifndef FAISS
FAISS := $(if $(shell nvidia-smi -L 2>/dev/null | grep '^GPU '),faiss-gpu,faiss-cpu)
endif
STAMP := $(VENV)/.installed-$(FAISS)-stamp
ARGS ?=

.PHONY: install train eval predict test test-all lint docs preview benchmark train-speed baselines strip-notebooks browser clean-logs

# faiss-cpu (a dependency of prn) and faiss-gpu both install the module `faiss`: one build must
# replace the other whole, so a venv that holds faiss-gpu drops both before prn's install lays faiss-cpu.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	! $(PIP) show -q faiss-gpu 2>/dev/null || $(PIP) uninstall -y -q faiss-gpu faiss-cpu
	$(PIP) install -q -c constraints.txt -e ".[test]"
ifeq ($(FAISS),faiss-gpu)
	$(PIP) uninstall -y -q faiss-cpu
	$(PIP) install -q -c constraints.txt faiss-gpu
	$(PY) -c "import faiss; assert faiss.get_num_gpus() > 0, 'faiss-gpu sees no GPU'; print('faiss-gpu', faiss.__version__, 'sees', faiss.get_num_gpus(), 'GPU(s)')"
endif
	rm -f $(VENV)/.installed-*stamp
	touch $(STAMP)

install: $(STAMP)

train: install ## train + test PRN (default: synthetic demo); pass Hydra overrides in ARGS="..."
	$(PY) src/train.py $(ARGS)

eval: install ## evaluate a checkpoint: make eval ARGS="ckpt_path=..."
	$(PY) src/eval.py $(ARGS)

predict: install ## score new images: make predict ARGS="ckpt_path=... input=folder/ threshold=0.5"
	$(PY) src/predict.py $(ARGS)

test: install ## fast suite (slow-marked tests excluded), one pytest-xdist worker per core
	$(PY) -m pytest -m "not slow" -n auto --dist loadgroup -q $(ARGS)

test-all: install ## everything, slow tests included
	$(PY) -m pytest -q $(ARGS)

lint: install ## ruff: lint and format check (pyproject.toml [tool.ruff]); `ruff format .` fixes the format
	$(VENV)/bin/ruff check src tests benchmarks deploy
	$(VENV)/bin/ruff format --check src tests benchmarks deploy

docs: install ## the docs site (mkdocs.yml, docs/) into site/, strict: a broken link fails
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

preview: install ## PNG grid of generated anomalies: make preview ARGS="dataset=mvtec category=bottle root=..."
	$(VENV)/bin/prn-preview $(ARGS)

benchmark: install ## model speed, data-pipeline speed and metric memory on this machine
	$(PY) benchmarks/model_speed.py --batch 8 --size 256
	$(PY) benchmarks/data_pipeline.py -- $(ARGS)
	$(PY) benchmarks/metrics_memory.py

train-speed: install ## training step for float32, bf16 and compile at batch 8 and 32: make train-speed ARGS="--root ... --category bottle --weights ... --dtd ..."
	$(PY) benchmarks/train_speed.py $(ARGS)

baselines: install ## anomalib PatchCore beside PRN on prn's split: make baselines ARGS="--root ... --category bottle --weights ... [--prn-results .../results.json]"
	$(PY) benchmarks/baselines.py $(ARGS)

strip-notebooks: install ## clear the outputs of notebooks/*.ipynb before committing them (the tests check)
	$(PY) notebooks/strip_outputs.py

browser: ## Chromium for the report's browser test (tests/reporting/test_report_run.py), from the system packages
	command -v chromium >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends chromium; }

clean-logs:
	rm -rf logs/train logs/eval
include make/tables.mk
