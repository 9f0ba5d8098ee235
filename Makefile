# hlsync: two commands set everything up on a fresh machine.
#   make run    the demo: the whole system on this machine (moto, simulators, a sync, a summary)
#   make test   every test (installs what it needs: a Python venv with moto server and cargo-lambda)
# Also: make bench (figures), make soak (the convergence test, 500 seeds), make package (Lambda zips),
# make deploy (SAM, guided), make infra-check.

SHELL := /bin/bash
VENV  := .venv
PY    := python3
CARGO ?= cargo
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test bench soak venv venv-lambda lint unit infra-check package deploy clean-venv

# Python tools the project needs: moto server (the AWS emulator of the tests and the demo).
$(VENV)/.installed: tools/requirements.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r tools/requirements.txt
	touch $@

venv: $(VENV)/.installed

# cargo-lambda alone: its Lambda runtime emulator runs the functions in `make test`. Installed
# without its ziglang dependency, which only the cross-linking of `make package` needs (6 s
# instead of ~45 s on a fresh machine).
$(VENV)/.installed-lambda: tools/requirements-lambda.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --no-deps -r tools/requirements-lambda.txt
	touch $@

venv-lambda: $(VENV)/.installed-lambda

# zig, cargo-lambda's cross linker, for the Lambda zips.
$(VENV)/.installed-package: tools/requirements-package.txt $(VENV)/.installed-lambda
	$(VENV)/bin/pip install --quiet -r tools/requirements-package.txt
	touch $@

run: venv
	$(CARGO) run --quiet -p hlsync-cli -- demo

test: venv lint unit infra-check

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --quiet -- -D warnings

unit: venv venv-lambda
	$(CARGO) test --workspace

infra-check:
	bash infra/check.sh

bench: venv
	$(CARGO) bench --quiet --workspace --bench pipeline --bench runtime

# The convergence test under random faults with many seeds (make test runs a few dozen).
SEEDS ?= 500
soak:
	HLSYNC_CONVERGENCE_SEEDS=$(SEEDS) $(CARGO) test --release -p hlsync-sync --test convergence

# The Lambda zips, one folder per architecture (target/lambda/<arch>/<function>/bootstrap.zip).
package: $(VENV)/.installed-package
	$(CARGO) lambda build --release --output-format zip --arm64 --lambda-dir target/lambda/arm64 -p hlsync-lambdas

# Deploys with SAM (guided: it asks for the stack name, region and parameters, and saves them).
# CONFIG is the hlsync TOML config passed to the functions (default hlsync.toml).
CONFIG ?= hlsync.toml
deploy: $(VENV)/.installed-package
	bash infra/check.sh --install
	cd infra && .venv-sam/bin/sam build --beta-features && .venv-sam/bin/sam deploy --guided --parameter-overrides "$$(bash config-param.sh $(abspath $(CONFIG)))"

clean-venv:
	rm -rf $(VENV)
