# Common jobs. Variables: SCALE (smoke|quick|paper), OUT (results folder), DEVICE
# (auto|cpu|cuda), DATA, PRECISION (fp32|tf32|bf16). A mistake in one (empty, a bad value)
# stops make with one line naming it before anything runs (the checks below).
PYTHON ?= python
SCALE ?= paper
# paper-scale results live in results/ (committed); other scales in results/<scale>/
OUT ?= $(if $(filter paper,$(SCALE)),results,results/$(SCALE))
DEVICE ?= auto
# Empty: the commands' own default, $ADAMREPRO_DATA else $XDG_CACHE_HOME/adamrepro/data or
# ~/.cache/adamrepro/data (one default for commands, tests and make); DATA=DIR overrides it
# for every target, tests included.
DATA ?=
DATA_FLAG = $(if $(DATA),--data-dir "$(DATA)")
EXPERIMENTS := $(basename $(notdir $(wildcard configs/*.yaml)))
# Empty: the config's training.precision; PRECISION=bf16 (or tf32) runs it so. OUT does not
# change with it: give it an OUT of its own, since run refuses bf16 or tf32 runs in a folder of
# fp32 results (the committed ones included)
PRECISION ?=
# More `adamrepro run` flags, e.g. RUN_FLAGS=--unverified-data for a re-encoded CIFAR-10
# copy you trust (../shared/data's), or RUN_FLAGS="--time-budget 8"
RUN_FLAGS ?=
RUN_OPTIONS = --scale $(SCALE) --out "$(OUT)" --device $(DEVICE) $(DATA_FLAG) $(if $(PRECISION),--precision $(PRECISION)) $(RUN_FLAGS)
RUN = $(PYTHON) -m adamrepro run configs/$@.yaml $(RUN_OPTIONS)

.PHONY: help install test lint data plan plot report bench bench-gpu bench-kernels clean all $(EXPERIMENTS)

# The first target, so that a bare `make` says what there is (it ran `pip install`).
help:  ## these targets, and what each does
	@grep -E '^[a-z$$(][^:]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/:[^#]*## /\t/' \
		| sed 's/^$$(EXPERIMENTS)/<experiment>/' | expand -t 16

install:  ## editable install with the dev extras into the active environment
	$(PYTHON) -m pip install -e '.[dev]'

# Test processes: one per core, at most 4 (tests/conftest.py shares the cores among them).
# TEST_WORKERS=0 runs the suite in this process alone.
TEST_WORKERS ?= auto
test: data  ## the test suite, on the real data (fetched first; offline: one line on what to place)
	$(if $(DATA),ADAMREPRO_DATA="$(DATA)") $(PYTHON) -m pytest -q --durations=25 \
		-n $(TEST_WORKERS) --maxprocesses 4 --dist loadscope

lint:  ## ruff on the Python, shellcheck (from the dev extras, beside PYTHON) on the shell scripts
	$(PYTHON) -m ruff check adamrepro tests $(wildcard scripts)
	"$$($(PYTHON) -c 'import os, sys; print(os.path.join(os.path.dirname(sys.executable), "shellcheck"))')" \
		-S warning scripts/*.sh scripts/lib/*.sh .ci/run

data:  ## download what is missing of every dataset into the data folder (checksummed)
	@$(PYTHON) -m adamrepro fetch $(DATA_FLAG)

$(EXPERIMENTS):  ## one target per config, e.g. make logreg_mnist SCALE=quick
	$(RUN)

# plot and report after every experiment, also under make -j (as prerequisites of all they
# could start beside the experiments and draw what was there)
all: $(EXPERIMENTS)  ## every experiment, its figures and the report
	$(MAKE) --no-print-directory plot report

plan:  ## what `make all` would train, experiment by experiment (run --dry-run: nothing written)
	@for name in $(EXPERIMENTS); do \
		$(PYTHON) -m adamrepro run configs/$$name.yaml $(RUN_OPTIONS) --dry-run || exit $$?; done

plot:  ## the figures of every experiment in OUT, from its tables
	$(PYTHON) -m adamrepro plot --out "$(OUT)"

report:  ## OUT/report.md and report.html: a verdict on every claim of the paper
	$(PYTHON) -m adamrepro report --out "$(OUT)"

# The benches write OUT/bench/ (results/bench/, the committed rows, by default): without
# --out, `make bench OUT=DIR` rewrote the committed rows all the same
bench:  ## the README's CPU rows: the two latency-bound experiments at quick scale
	$(PYTHON) -m adamrepro bench logreg_mnist --scale quick --device $(DEVICE) --out "$(OUT)" $(DATA_FLAG)
	$(PYTHON) -m adamrepro bench logreg_imdb --scale quick --device $(DEVICE) --out "$(OUT)" $(DATA_FLAG)

# Passes each GPU bench times (a paper-scale reference loop over every pass would take hours),
# and more `adamrepro bench` flags, e.g. BENCH_FLAGS=--unverified-data for a re-encoded CIFAR-10
BENCH_PASSES ?= 3
BENCH_FLAGS ?=
bench-gpu:  ## the README's GPU table: every experiment at paper scale, BENCH_PASSES passes each
	@for name in $(EXPERIMENTS); do \
		$(PYTHON) -m adamrepro bench configs/$$name.yaml --scale paper --device cuda \
			--out "$(OUT)" $(DATA_FLAG) --passes $(BENCH_PASSES) --reference-passes 1 $(BENCH_FLAGS) || exit $$?; done

bench-kernels:  ## the README's "Kernels" tables: each kernel switch against the default loop
	$(PYTHON) scripts/bench_kernels.py logreg_mnist mlp --scale $(SCALE) --device $(DEVICE) \
		--out "$(OUT)" $(DATA_FLAG)
	$(PYTHON) scripts/bench_kernels.py cnn_cifar10 --scale $(SCALE) --device $(DEVICE) \
		--out "$(OUT)" $(DATA_FLAG) --unverified-data --steps 20

# OUT's own experiments only (results/ by default, results/<scale> with SCALE): their runs/
# (run records, checkpoints and saved parameters: what resume, `run --force` and vae_samples
# read) and locks; other folders' runs/, such as results/quick-cpu/*/runs, stay
clean:  ## remove caches, build outputs, and OUT/*/runs and locks (tables and figures stay)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	@# only the runs/ of adamrepro's experiment folders (a config.json or a sweep's owner
	@# file beside it): OUT=~ removed every ~/*/runs, whoever's
	for runs in "$(OUT)"/*/runs; do \
		folder=$$(dirname "$$runs"); \
		if [ -f "$$folder/config.json" ] || [ -f "$$folder/.sweep-owner.json" ]; then \
			rm -rf "$$runs" "$$folder/.lock"; fi; done
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Checks of the variables the goals given pass on, as make reads this file (here, at its end,
# where every variable has its value; `make -n` checks too): a mistake is one line naming the
# variable and its fix ("Makefile:N: *** OUT is empty; ...  Stop.", exit 2) and nothing runs,
# not even the first experiment of `make all`. Unchecked, an empty OUT and DEVICE made `run
# ... --out  --device` (results in a folder named --device), `make clean OUT=` `rm -rf
# /*/runs`, and a bad SCALE, DEVICE or PRECISION was refused naming the flag it became.
comma := ,
empty :=
space := $(empty) $(empty)
GOALS := $(or $(MAKECMDGOALS),install)
# $(call uses,TARGETS): non-empty when a goal given is one of TARGETS
uses = $(filter $(1),$(GOALS))
# $(call word_of,VAR,FIX): VAR holds one word (a path with a space would be two arguments)
word_of = $(if $(strip $($(1))),$(if $(word 2,$($(1))),$(error $(1)="$($(1))" has a space; $(2))),$(error $(1) is empty; $(2)))
# $(call one_of,VAR,CHOICES,EXAMPLE)
one_of = $(call word_of,$(1),give one of $(subst $(space),|,$(2))$(comma) e.g. $(1)=$(3))$(if $(filter $(2),$($(1))),,$(error $(1)=$($(1)) is not one of $(subst $(space),|,$(2)); e.g. $(1)=$(3)))
# $(call folder,VAR,FIX): one word, not the root folder, not a file
folder = $(call word_of,$(1),$(2))$(if $(filter /,$(abspath $($(1)))),$(error $(1)=$($(1)) is the root folder; $(2)))$(if $(wildcard $($(1))),$(if $(wildcard $($(1))/.),,$(error $(1)=$($(1)) is a file; $(2))))
digits_out = $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst 6,,$(subst 7,,$(subst 8,,$(subst 9,,$(1)))))))))))
# $(call count,VAR,FIX): a whole number of at least 1
count = $(call word_of,$(1),$(2))$(if $(or $(call digits_out,$($(1))),$(if $(subst 0,,$($(1))),,zero)),$(error $(1)=$($(1)) is not a whole number of at least 1; $(2)))
EXPERIMENT_GOALS := $(EXPERIMENTS) all plan
OUT_FIX := give the results folder (e.g. OUT=/tmp/adamrepro-out)$(comma) or leave OUT unset for results (results/SCALE at another scale)
$(if $(call uses,install test lint data $(EXPERIMENT_GOALS) plot report bench bench-gpu bench-kernels),$(call word_of,PYTHON,give the Python to run (e.g. PYTHON=python3) or leave PYTHON unset))
$(if $(call uses,$(EXPERIMENT_GOALS) plot report bench bench-gpu bench-kernels clean),$(call folder,OUT,$(OUT_FIX)))
$(if $(call uses,$(EXPERIMENT_GOALS) plot report clean bench-kernels),$(call one_of,SCALE,smoke quick paper,quick))
$(if $(call uses,$(EXPERIMENT_GOALS) bench bench-kernels),$(call one_of,DEVICE,auto cpu cuda,cpu))
$(if $(and $(strip $(DATA)),$(call uses,test data $(EXPERIMENT_GOALS) bench bench-gpu bench-kernels)),$(call folder,DATA,give the data folder (e.g. DATA=~/.cache/adamrepro/data) or leave DATA unset for the default))
$(if $(and $(strip $(PRECISION)),$(call uses,$(EXPERIMENT_GOALS))),$(call one_of,PRECISION,fp32 tf32 bf16,bf16))
$(if $(call uses,bench-gpu),$(call count,BENCH_PASSES,give the passes each GPU bench times (e.g. BENCH_PASSES=3) or leave it unset))
$(if $(call uses,test),$(call word_of,TEST_WORKERS,give auto or a number of test processes (0: one process))$(if $(or $(filter auto logical,$(TEST_WORKERS)),$(if $(call digits_out,$(TEST_WORKERS)),,digits)),,$(error TEST_WORKERS=$(TEST_WORKERS) is not auto or a number of test processes; e.g. TEST_WORKERS=2 (0: one process))))
