# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

tests/interop/node_modules: tests/interop/package.json tests/interop/package-lock.json
	@if command -v npm >/dev/null; then npm ci --silent --prefix tests/interop; \
	else echo "npm not found: the lora-packet cross-check tests will be skipped"; fi

demo: $(STAMP)
	$(VENV)/bin/lora-gateway demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: $(STAMP) tests/interop/node_modules lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) tests/interop/node_modules .pytest_cache .mypy_cache .ruff_cache
