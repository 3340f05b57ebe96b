# Paper tables from Hydra sweeps (docs/reproduce.md):
#   make reproduce-table4                      # the paper's schedule on the real data (GPU)
#   make reproduce-table4 SCALE=smoke          # minutes on a CPU, synthetic data, numbers mean nothing
#   make reproduce-table1 ROOT=/data/mvtec DTD=/data/dtd/images TRAINER=gpu ARGS="logger=wandb"
#   make reproduce-table1 SEEDS=0,1,2          # every cell three times: mean ± std over seeds
#   make reproduce-table1 SCALE=cpu ARGS="category=bottle,transistor"   # real data, schedule=cpu (300 steps of batch 8)
#   make aggregate-table2 SWEEP_DIR=logs/reproduce/paper/table1   # re-aggregate existing jobs
# The sweep goes to logs/reproduce/$(SCALE)/tableN; a failed job does not stop the
# aggregation (partial sweeps show "missing"), but make still exits with its status.
SCALE ?= paper
TRAINER ?= default
ROOT ?=
DTD ?=
SEEDS ?=
REPRODUCE_DIR ?= logs/reproduce
TABLES := 1 2 3 4 5 6 7 8

# smoke: synthetic data (categories tiles, discs), a few steps, random encoder, few k-means
# iterations; HEA uses the synthetic images as stand-in textures so no DTD is needed.
SMOKE_OVERRIDES := dataset=synthetic debug=tiny \
	'generation.dtd_dir=$${paths.data_dir}/synthetic'
SMOKE_CELLS := category=tiles,discs
SMOKE_CELLS_8 := experiment/table8_cells@_global_=synthetic_tiles,synthetic_discs

scale_overrides = $(if $(filter smoke,$(SCALE)),$(SMOKE_OVERRIDES) $(if $(filter 8,$(1)),$(SMOKE_CELLS_8),$(SMOKE_CELLS)),$(if $(filter cpu,$(SCALE)),schedule=cpu,$(if $(filter paper,$(SCALE)),,$(error SCALE=$(SCALE): use SCALE=paper, SCALE=cpu or SCALE=smoke))))
path_overrides = $(if $(ROOT),root=$(ROOT)) $(if $(DTD),generation.dtd_dir=$(DTD))
# SEEDS=0,1,2 adds the seed to the sweep (one job per cell and seed); empty: the configs' seed (0)
seed_overrides = $(if $(SEEDS),seed=$(SEEDS))
sweep_dir = $(REPRODUCE_DIR)/$(SCALE)/table$(1)

.PHONY: $(addprefix reproduce-table,$(TABLES)) $(addprefix aggregate-table,$(TABLES)) reproduce-all

$(addprefix reproduce-table,$(TABLES)): reproduce-table%: install
	status=0; $(PY) src/train.py -m experiment=table$* trainer=$(TRAINER) hydra.sweep.dir=$(call sweep_dir,$*) \
		$(call scale_overrides,$*) $(path_overrides) $(seed_overrides) $(ARGS) || status=$$?; \
	$(PY) -m prn.reporting.aggregate --table table$* --sweep-dir $(call sweep_dir,$*) && exit $$status

$(addprefix aggregate-table,$(TABLES)): aggregate-table%: install
	$(PY) -m prn.reporting.aggregate --table table$* --sweep-dir $(or $(SWEEP_DIR),$(call sweep_dir,$*))

reproduce-all: $(addprefix reproduce-table,$(TABLES)) ## every table (paper scale: days of GPU time)
