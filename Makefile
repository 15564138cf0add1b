.DEFAULT_GOAL := demo
# One-command set-up: `make demo` and `make test` create .venv/ on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-core notebooks lint lab bench clean lock server server-stop docs

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,spark]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m omni_ml.demo demo_out

test: $(STAMP)
	$(BIN)/ruff check omni_ml tests benchmarks experiments scripts
	$(BIN)/ruff format --check omni_ml tests benchmarks experiments scripts
	$(BIN)/mypy
	$(BIN)/lint-imports
	MPLBACKEND=Agg $(BIN)/python -m pytest -q
	$(MAKE) notebooks

# The core install alone (what `pip install omni_ml` gives a scoring container or a Spark executor): no notebook,
# plotting, Spark or tracking-server packages; the scoring tests (Spark ones excluded: pyspark is an extra) pass in it.
CORE := .venv-core
test-core:
	test -x $(CORE)/bin/python || $(PYTHON) -m venv $(CORE)
	$(CORE)/bin/python -m pip install --quiet --upgrade pip
	$(CORE)/bin/python -m pip install --quiet -c constraints.txt -e . pytest hypothesis
	$(CORE)/bin/python -c "import importlib.util as u, sys; extra = [m for m in ('jupyterlab', 'matplotlib', 'pyspark', 'shap', 'flask') if u.find_spec(m)]; sys.exit(f'the core install has {extra}' if extra else 0)"
	du -sh $(CORE)
	$(CORE)/bin/python -m pytest -q -m "not spark" tests/scoring/test_scoring.py

# A team tracking server on this machine: PostgreSQL backend store + mlflow server (README, "Team server").
server: $(STAMP)
	$(BIN)/python scripts/team_server.py start --dir .team
server-stop: $(STAMP)
	$(BIN)/python scripts/team_server.py stop --dir .team

# The documentation site (mkdocs-material): the notebooks executed now (nbconvert, in experiments/ so they share
# experiments/_work/) and rendered with their plots, the CLI reference from the commands' help, README sections.
# Built with warnings as errors, then every page opened in headless Chromium (scripts/check_docs.py).
docs: $(STAMP)
	rm -rf docs/_generated site && mkdir -p docs/_generated/notebooks
	cd experiments && MPLBACKEND=Agg OMNI_ML_UNSALTED=1 ../$(BIN)/jupyter nbconvert --to notebook --execute \
		--ExecutePreprocessor.timeout=600 --output-dir ../docs/_generated/notebooks [0-9]*.ipynb
	$(BIN)/typer omni_ml.cli utils docs --name omni-ml --title "Command line" --output docs/_generated/cli.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/python scripts/check_docs.py site

# The experiments/ notebooks, executed top to bottom on the small simulated world (nbmake, kernel python3).
notebooks: $(STAMP)
	OMNI_ML_UNSALTED=1 MPLBACKEND=Agg $(BIN)/python -m pytest -q --nbmake --nbmake-timeout=600 experiments/

lint: $(STAMP)
	$(BIN)/ruff check omni_ml tests benchmarks experiments scripts
	$(BIN)/ruff format --check omni_ml tests benchmarks experiments scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

lab: $(STAMP)
	OMNI_ML_UNSALTED=1 MLFLOW_TRACKING_URI=sqlite:///$(CURDIR)/mlflow.db $(BIN)/jupyter lab --notebook-dir=experiments \
		$(if $(filter 0,$(shell id -u)),--allow-root)  # containers often run as root; Jupyter refuses that without the flag

# The benchmarks also need the `bench` extra (lifetimes, whose package ships the CDNOW log bench_real reads).
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,spark,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run_all $(BENCH)

# Re-resolve the pins after changing dependencies in pyproject.toml.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet --upgrade pip && .lockenv/bin/pip install --quiet '.[dev,spark,bench]'
	.lockenv/bin/pip freeze --exclude-editable | grep -v '^omni' > constraints.txt
	rm -rf .lockenv

clean:
	rm -rf $(VENV) $(CORE) .pytest_cache .mypy_cache .ruff_cache
