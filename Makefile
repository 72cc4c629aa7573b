# The two commands: `make demo` (the main job on embedded defaults) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
TANDEM := $(VENV)/bin/tandem
# One home per task (a store serves one task): .tandem for the default, .tandem-<task> for another.
export TANDEM_HOME ?= $(CURDIR)/.tandem$(if $(filter-out har,$(TANDEM_TASK)),-$(notdir $(abspath $(TANDEM_TASK))))
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
# The simulated devices' secret (pseudonymization key): from the environment, else created once in
# the demo's keychain file (mode 600, outside the store; never in git, logs or MLflow).
KEYCHAIN := $(TANDEM_HOME)/device-keychain.env
# The server's release signing key (secret, mode 600) and the public key an app build pins: a demo
# pair created once beside it (in production the private key lives in a secret manager).
SIGNING := $(TANDEM_HOME)/release-signing.env
PUBLIC_KEY := $(TANDEM_HOME)/release-public-key.txt

.PHONY: demo test swift-test install clean-demo bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade -q pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

$(KEYCHAIN):
	@mkdir -p $(TANDEM_HOME)
	@umask 077; $(PY) -c 'import secrets; print("TANDEM_PSEUDONYM_KEY=" + secrets.token_hex(32))' > $@

$(SIGNING): $(VENV)/.installed
	@$(TANDEM) keys create --out-dir $(TANDEM_HOME)

demo: install $(KEYCHAIN) $(SIGNING)
	@set -a; [ -n "$$TANDEM_PSEUDONYM_KEY" ] || . $(KEYCHAIN); [ -n "$$TANDEM_SIGNING_KEY" ] || . $(SIGNING); set +a; \
	$(TANDEM) share --via embedded && $(TANDEM) run && $(TANDEM) releases && \
	$(TANDEM) pull --channel staging --out $(TANDEM_HOME)/app-build/model --public-key $(PUBLIC_KEY)

# One pytest worker per core (pytest-xdist); a test file stays on one worker, so its module fixtures are
# built once. TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= auto

test: install
	$(VENV)/bin/lint-imports
	$(MAKE) --no-print-directory swift-test
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

# TandemKit (swift/): swift build + swift test in swift/.build, the scratch folder the pytest fixture
# (tests/swift_build.py) reuses. No toolchain: one line and a failure, never a silent pass;
# TANDEM_SKIP_SWIFT=1 skips on purpose (a developer's machine without Swift).
swift-test:
	@if [ "$$TANDEM_SKIP_SWIFT" = 1 ]; then echo "TANDEM_SKIP_SWIFT=1: Swift build and tests skipped on purpose"; \
	elif ! command -v swift >/dev/null 2>&1; then \
	  echo "no Swift toolchain on PATH: install Swift 6.x (swift.org; CI has it at /opt/swift/usr/bin) or set TANDEM_SKIP_SWIFT=1" >&2; exit 1; \
	else cd swift && swift build --scratch-path .build && swift test --scratch-path .build; fi

# Ingest at fleet scale, local store and moto S3 (minutes), then featurization windows/s in Swift (release
# build) against numpy (after ingest: bench_ingest rewrites results.json whole), the gateway against direct
# writes, `tandem evaluate`'s runs in worker processes against one process: bench/results.json.
bench: install
	nice $(PY) bench/bench_ingest.py
	nice $(PY) bench/bench_swift_featurize.py
	nice $(PY) bench/bench_gateway.py
	nice $(PY) bench/bench_evaluate.py

clean-demo:
	rm -rf $(TANDEM_HOME)
