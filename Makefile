# Set-up and main tasks.  Everything needed is installed into .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= emkit-out

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-core: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,io,dask,behavior]"
	touch $(VENV)/.installed-core $@

## make demo: fit a Gaussian mixture to the embedded Old Faithful data; writes $(OUT)/
demo: $(VENV)/.installed-core
	$(BIN)/emkit fit --example faithful --model gmm -k 2 --seed 0 -o $(OUT)

## make test: the whole test suite (includes a tiny benchmark smoke run)
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

## make bench: speed against the fastest setting of scikit-learn and hmmlearn (rewrites the README speed table),
## and the out-of-core / online / Dask targets,
## printed as tables and written as JSON (benchmarks/results.json, benchmarks/scale_results.json)
bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run.py --readme
	$(BIN)/python benchmarks/scale.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
