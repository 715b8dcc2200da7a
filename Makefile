# Two entry points for a newcomer:  `make demo`  and  `make test`.
# Both create the Python 3.12 virtual environment in .venv on first use.
# `make test-keras-versions` runs the Keras-seam tests under the lowest and newest Keras allowed (scripts/test-keras-versions; not in CI).
VENV   := .venv
BIN    := $(VENV)/bin
export KERAS_BACKEND := tensorflow
export TF_CPP_MIN_LOG_LEVEL := 2
# pytest-xdist workers for `make test` / `make test-quick` (a serial run leaves much of a second core idle:
# TensorFlow's small ops and the tests' subprocesses wait on each other). JOBS=0 runs in one process.
# --dist loadfile keeps each test module on one worker, so its module fixtures (generated data sets, the
# one-device reference of the multi-worker tests) are built once.
JOBS   ?= 2

.PHONY: install demo test test-quick test-keras-versions docs bench clean

# Dependencies are installed once (again when the packaging files change).
$(VENV)/.dependencies: pyproject.toml setup.cfg scripts/find-python312
	rm -rf $(VENV)
	"$$(scripts/find-python312)" -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '.[test,datasets,docs]'
	touch $@

# The package itself is reinstalled (as a wheel, not editable) on every run,
# so the tests exercise exactly what `pip install .` ships.
install: $(VENV)/.dependencies
	$(BIN)/pip install --quiet --no-deps --force-reinstall .
	rm -rf build

demo: install
	$(BIN)/keras-multilevel demo --out out/demo

test: install
	$(BIN)/pytest -q -n $(JOBS) --dist loadfile $(PYTEST_ARGS)

# The quick subset a contributor runs often: every test but those marked slow.
test-quick: install
	$(BIN)/pytest -q -n $(JOBS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

test-keras-versions:
	scripts/test-keras-versions

bench: install
	$(BIN)/keras-multilevel bench circles --out out/bench/circles

clean:
	rm -rf $(VENV) .venv-keras-* build out *.egg-info docs/_build

# `make docs`: sphinx-build -W --keep-going -b html docs docs/_build/html
docs: install
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html
