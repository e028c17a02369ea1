# Common jobs. Variables: SCALE (smoke|quick|paper), OUT (results folder), DEVICE, DATA.
PYTHON ?= python
SCALE ?= paper
# paper-scale results live in results/ (committed); other scales in results/<scale>/
OUT ?= $(if $(filter paper,$(SCALE)),results,results/$(SCALE))
DEVICE ?= auto
DATA ?= $(or $(ADAMREPRO_DATA),$(HOME)/.cache/adamrepro/data)
EXPERIMENTS := $(basename $(notdir $(wildcard configs/*.yaml)))
RUN = $(PYTHON) -m adamrepro run configs/$@.yaml --scale $(SCALE) --out $(OUT) --device $(DEVICE) --data-dir $(DATA)

.PHONY: install test lint data plot report bench bench-gpu clean all $(EXPERIMENTS)

install:  ## editable install with the dev extras into the active environment
	$(PYTHON) -m pip install -e '.[dev]'

test:  ## the test suite (needs real data: ADAMREPRO_DATA or ./data)
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check adamrepro tests $(wildcard scripts)

data:  ## download every dataset into DATA (checksummed)
	$(PYTHON) -m adamrepro fetch --data-dir $(DATA)

$(EXPERIMENTS):  ## one target per config, e.g. make logreg_mnist SCALE=quick
	$(RUN)

all: $(EXPERIMENTS) plot report  ## every experiment, its figures and the report

plot:
	$(PYTHON) -m adamrepro plot --out $(OUT)

report:
	$(PYTHON) -m adamrepro report --out $(OUT)

bench:  ## the README's CPU row
	$(PYTHON) -m adamrepro bench logreg_mnist --scale quick --device $(DEVICE) --data-dir $(DATA)

bench-gpu:  ## the README's GPU table: every experiment at paper scale (the MLP's first 10 passes)
	$(PYTHON) -m adamrepro bench logreg_mnist --scale paper --device cuda --data-dir $(DATA)
	$(PYTHON) -m adamrepro bench logreg_imdb --scale paper --device cuda --data-dir $(DATA)
	$(PYTHON) -m adamrepro bench mlp_dropout --scale paper --device cuda --data-dir $(DATA) --passes 10

clean:  ## remove caches and uncommitted run records (committed tables and figures stay)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info $(OUT)/*/runs $(OUT)/*/.lock
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
