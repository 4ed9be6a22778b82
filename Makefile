# Set-up is part of every target: each creates .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test lint wheel wheelhouse lock lock-check clean

# the development install is the locked one: every package at its uv.lock version, checked against its hash
$(BIN)/.installed: pyproject.toml uv.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "uv>=0.5,<0.14"
	$(BIN)/uv export --quiet --frozen --no-emit-project --all-extras --no-header -o $(VENV)/requirements.lock.txt
	$(BIN)/pip install --quiet --require-hashes -r $(VENV)/requirements.lock.txt
	$(BIN)/pip install --quiet --no-deps -e ".[test,dev,postgres,distributed,console]"
	touch $@

demo: $(BIN)/.installed      ## the main job: a full sync on the built-in simulators, embedded SQLite
	$(BIN)/crmbridge demo

test: $(BIN)/.installed      ## lint and lock check, then the whole suite: the fast tiers, then the slow tier (starts nothing: .ci/run starts the services)
	$(BIN)/ruff check .
	$(BIN)/uv lock --check
	$(BIN)/pytest $(PYTEST_ARGS)
	$(BIN)/pytest -m slow $(PYTEST_ARGS) || test $$? -eq 5   # 5: PYTEST_ARGS selected no slow test

lint: $(BIN)/.installed
	$(BIN)/ruff check .

wheel: $(BIN)/.installed     ## build the wheel and check what it ships
	rm -rf dist build
	$(BIN)/python -m build --wheel --outdir dist . >/dev/null
	$(BIN)/python tests/tools/check_wheel.py dist/*.whl

wheelhouse: $(BIN)/.installed  ## the offline bundle dist/crmbridge-VERSION-wheelhouse.tar.gz (docs/install.md)
	PYTHON=$(BIN)/python deploy/wheelhouse/build.sh

lock: $(BIN)/.installed      ## re-resolve uv.lock after a change to pyproject.toml's dependencies
	$(BIN)/uv lock

lock-check: $(BIN)/.installed ## fail if uv.lock does not match pyproject.toml (also a test)
	$(BIN)/uv lock --check

clean:
	rm -rf $(VENV) build dist *.egg-info var .pytest_cache
