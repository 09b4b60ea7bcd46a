# Two commands do all set-up: `make run` serves, `make test` tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/qstash
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test lint bench chaos clean

$(BIN)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# The official TypeScript SDK, driven by the dev-server test.
tests/js/node_modules/.package-lock.json: tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error

install: $(BIN)/.installed

# Web, worker and clock on http://127.0.0.1:8080 with an embedded store (var/)
# and the QStash dev server's public credentials. Ctrl-C stops all of it.
run: install
	DEBUG=1 $(BIN)/python manage.py qstash_dev

test: install tests/js/node_modules/.package-lock.json
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
		$(BIN)/python -m tests.preflight
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
		$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

bench: install
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
		$(BIN)/python -m tests.preflight
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
		$(BIN)/python -m tests.bench

# Faults against the production stack on a private PostgreSQL and redis-server (it never
# touches the shared ones): worker/clock/web SIGKILL, Redis and PostgreSQL restarts, failing
# destinations. Nothing accepted may be lost. CHAOS_ARGS=--short is the CI form.
chaos: install
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) var
