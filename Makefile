# The two commands of the README: `make run` and `make test`. Both bootstrap from nothing.
VENV ?= .venv
PY := $(VENV)/bin/python
export DJANGO_SETTINGS_MODULE := federation.settings

.PHONY: run test bootstrap migrate lint demo clean

bootstrap:
	@bash scripts/bootstrap.sh

migrate: bootstrap
	@$(PY) manage.py migrate --noinput
	@$(PY) manage.py createcachetable

run: migrate
	@$(PY) manage.py collectstatic --noinput -v 0
	@$(PY) manage.py ensure_admin
	@$(PY) manage.py seed_demo
	@$(PY) manage.py runall

test: bootstrap
	@bash scripts/test.sh $(ARGS)

lint: bootstrap
	@$(VENV)/bin/ruff check .

clean:
	rm -rf var/ .pytest_cache
