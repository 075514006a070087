# Quick start: `make test` and `make demo` set themselves up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed

.PHONY: test lint unit demo demo-flask demo-fastapi demo-django demo-keys idp bench clean \
	release-check docs
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,jks,bench]'
	touch $(BENCH_STAMP)

# Benchmarks: one table of ratios measured side by side (BENCH_ARGS="--json FILE" to keep rows).
bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk; } \
		|| { echo "make bench: needs wrk (Debian: apt-get install wrk)"; exit 2; }
	$(BIN)/python -m bench $(BENCH_ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Tests and linters: everything the suite uses, the benchmarks' peers too (the bench smoke test
# runs each row once); the demo needs much less, below.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,jks,bench]'
	touch $(STAMP)

# The demos: the package and what the examples run (the examples extra), no test tools.
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[examples]'
	touch $(DEMO_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict adapter

# Two workers, each test file in one (its module fixtures and servers stay together): the
# suite waits on servers and browsers more than it computes, so this halves it on 2 cores.
PYTEST_WORKERS ?= 2
test: lint docs
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

unit: $(STAMP)
	$(BIN)/pytest tests/unit

DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,jks,docs]'
	touch $(DOCS_STAMP)

# The documentation site (mkdocs.yml, docs/) into site/: strict (a broken link or anchor, a page
# left out of the nav fails it) and offline (no web fonts, nothing fetched). make test runs it.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The release as a user gets it (make test runs it too): sdist and wheel built from a copy of
# the sources, twine check, the wheel installed into a fresh virtualenv outside the checkout,
# its --version, config check on the README's example, alice signed in through the Starlette
# example. Nothing is left in the working tree; publishing is not part of it.
release-check: $(STAMP)
	$(BIN)/pytest tests/integration/test_release.py

IDP_STAMP := tests/idp/node_modules/.package-lock.json

$(IDP_STAMP): tests/idp/package-lock.json
	cd tests/idp && npm ci --no-audit --no-fund
	touch $(IDP_STAMP)

idp: $(IDP_STAMP)

# The main job: the Starlette example behind the middleware, signing in against the test
# identity server with private_key_jwt (the server fetches the app's /k_jwks).
# The app listens on PORT, the identity server on IDP_PORT: make demo PORT=8001 IDP_PORT=9001.
PORT ?= 8000
IDP_PORT ?= 9000
DEMO := $(BIN)/python -m examples.demo --port $(PORT) --idp-port $(IDP_PORT)

demo: $(DEMO_STAMP) $(IDP_STAMP)
	$(DEMO) starlette

demo-flask: $(DEMO_STAMP) $(IDP_STAMP)
	$(DEMO) flask

# The FastAPI example: role-protected routes and Swagger UI's "Authorize" at /docs.
demo-fastapi: $(DEMO_STAMP) $(IDP_STAMP)
	$(DEMO) fastapi

# The Django example: Django's users, login_required, a role-protected view and the admin.
demo-django: $(DEMO_STAMP) $(IDP_STAMP)
	$(DEMO) django

# Keys only: generate, configure, show what /k_jwks will serve.
demo-keys: $(DEMO_STAMP)
	bash examples/keys_demo.sh

# Everything the targets above create: the virtualenv, the identity server's node modules,
# the demos' directories, pip's egg-info, the tools' caches and Python's bytecode.
clean:
	rm -rf $(VENV) tests/idp/node_modules demo demo-keys build dist site *.egg-info \
		.pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
