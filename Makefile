# The two commands: `make demo` runs the demo lab, `make test` runs every check and test.
# Both do all set-up on a fresh Debian 12 machine first (scripts/setup.sh).

.PHONY: setup test test-fast demo lint docs bench

setup:
	scripts/setup.sh

test: setup
	.venv/bin/pytest

test-fast: setup
	.venv/bin/pytest -m "not real"

demo: setup
	.venv/bin/reconcile apply manifests/demo.toml --yes
	.venv/bin/reconcile plan manifests/demo.toml --detailed-exitcode
	.venv/bin/reconcile drift manifests/demo.toml

docs: setup
	.venv/bin/python scripts/gen_manifest_docs.py
	.venv/bin/python scripts/gen_nix_docs.py

bench: setup
	.venv/bin/python bench/noop_plan.py 100 1000
	.venv/bin/python bench/slope.py 1000 10000
