.DEFAULT_GOAL := demo
# One-command set-up: `make demo` and `make test` create .venv/ on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test notebooks lint lab bench clean lock

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,spark]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m omni_ml.demo demo_out

test: $(STAMP)
	$(BIN)/ruff check omni_ml tests benchmarks experiments
	$(BIN)/mypy
	$(BIN)/lint-imports
	MPLBACKEND=Agg $(BIN)/python -m pytest -q
	$(MAKE) notebooks

# The experiments/ notebooks, executed top to bottom on the small simulated world (nbmake, kernel python3).
notebooks: $(STAMP)
	OMNI_ML_UNSALTED=1 MPLBACKEND=Agg $(BIN)/python -m pytest -q --nbmake --nbmake-timeout=600 experiments/

lint: $(STAMP)
	$(BIN)/ruff check omni_ml tests benchmarks experiments
	$(BIN)/ruff format --check omni_ml tests benchmarks experiments
	$(BIN)/mypy
	$(BIN)/lint-imports

lab: $(STAMP)
	OMNI_ML_UNSALTED=1 MLFLOW_TRACKING_URI=sqlite:///$(CURDIR)/mlflow.db $(BIN)/jupyter lab --notebook-dir=experiments \
		$(if $(filter 0,$(shell id -u)),--allow-root)  # containers often run as root; Jupyter refuses that without the flag

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all $(BENCH)

# Re-resolve the pins after changing dependencies in pyproject.toml.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet --upgrade pip && .lockenv/bin/pip install --quiet '.[dev,spark]'
	.lockenv/bin/pip freeze --exclude-editable | grep -v '^omni' > constraints.txt
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
