# Set-up is part of every target: each creates .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test lint wheel clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,dev]"
	touch $@

demo: $(BIN)/.installed      ## the main job: a full sync on the built-in simulators, embedded SQLite
	$(BIN)/crmbridge demo

test: $(BIN)/.installed      ## lint, then the whole suite: the fast tiers, then the slow tier (starts nothing: .ci/run starts the services)
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)
	$(BIN)/pytest -m slow $(PYTEST_ARGS) || test $$? -eq 5   # 5: PYTEST_ARGS selected no slow test

lint: $(BIN)/.installed
	$(BIN)/ruff check .

wheel: $(BIN)/.installed     ## build the wheel and check what it ships
	rm -rf dist build
	$(BIN)/python -m build --wheel --outdir dist . >/dev/null
	$(BIN)/python tests/tools/check_wheel.py dist/*.whl

clean:
	rm -rf $(VENV) build dist *.egg-info var .pytest_cache
