# Two commands do all the set-up (see README.md):
#   make lab    create/refresh .venv from requirements.lock, then open JupyterLab at the
#               repository root (notebooks/, labs/ and the student versions in build/labs/)
#   make test   create/refresh .venv, then check the labs' student versions and run the
#               whole suite: unit + interop + browser tests, nbval over notebooks/ and labs/
#
# The environment is installed from requirements.lock: exact versions (with hashes) that
# `make lock` resolves from pyproject.toml's ranges with uv.  The stored notebook outputs hold
# byte counts that depend on those versions, so every learner gets the same ones.
#   make lock       re-resolve after editing pyproject.toml's dependencies (keeps the other pins)
#   make upgrade    newest versions the ranges allow, reinstall, re-execute every notebook
#   make notebooks  re-execute every notebook and lab, storing their outputs
PYTHON ?= python3
# make lab: the address and port JupyterLab listens on (PORT empty: 8888 or the next free one),
# extra JupyterLab arguments, and the folder it opens (the repository root).
IP     ?= 127.0.0.1
PORT   ?=
ARGS   ?=
DIR    ?= .
# Jupyter refuses to run as root without --allow-root (a container's default user is root).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
# Linux without a display (a container, an SSH session): don't try to start a browser (it would
# find none, or a text one); JupyterLab prints the URL with its token to open from elsewhere.
NO_DISPLAY := $(and $(filter Linux,$(shell uname -s)),$(if $(DISPLAY)$(WAYLAND_DISPLAY),,yes))
BROWSER_FLAG := $(if $(NO_DISPLAY),--no-browser)
# A port asked for is the one used (e.g. the one a container publishes), never the next free one.
PORT_FLAGS := $(if $(PORT),--ServerApp.port=$(PORT) --ServerApp.port_retries=0)
# Kernels get CurveZMQ keys from the server, so their channels are encrypted (and ipykernel does
# not warn at every start that they are not).
KERNEL_FLAGS := --KernelManager.transport_encryption=auto

VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed
LOCK   := requirements.lock
# uv resolves the lock; it lives in its own small venv, not in the lab's.
UV_VERSION := 0.13.10
UV_VENV := build/uv
UV     := $(UV_VENV)/bin/uv
# Never let playwright fetch a browser of its own: the browser tests use the system's chromium.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: lab test bench venv clean student lock upgrade notebooks

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "lablib needs Python >= 3.11, found " + sys.version'
	@echo "Installing the locked environment into $(VENV)/ (requirements.lock) ..."
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -qq --upgrade pip
	$(PIP) install -qq --require-hashes -r $(LOCK)
	$(PIP) install -qq --no-deps -e .
	@$(PIP) check >/dev/null || { $(PIP) check; echo "$(LOCK) lacks a dependency of pyproject.toml: run 'make lock'"; exit 1; }
	$(PY) -m lablib.services.mqtt install >/dev/null   # amqtt, in a venv of its own (see lablib/services/mqtt.py)
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lablib)" >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.ip=$(IP) $(PORT_FLAGS) $(ROOT_FLAG) $(BROWSER_FLAG) $(KERNEL_FLAGS) $(ARGS) $(DIR)

test: $(STAMP)
	$(PY) -m labs.make_student --check
	$(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m benchmarks

# build/labs/ and build/notebooks/ (chapters with question markers; the others are skipped)
student: $(STAMP)
	$(PY) -m labs.make_student

$(UV):
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip --disable-pip-version-check install -qq uv==$(UV_VERSION)

# One resolution for every platform and Python >= 3.11 (--universal), with the hash of every
# file, so `pip install --require-hashes` installs exactly what was locked.  UPGRADE=1 moves
# every pin to the newest version the ranges allow; without it, existing pins are kept.
lock: $(UV)
	$(UV) pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	  --quiet --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) -o $(LOCK)

upgrade:
	$(MAKE) lock UPGRADE=1
	$(MAKE) notebooks

notebooks: $(STAMP)
	$(PY) scripts/execute_notebooks.py notebooks/*.ipynb labs/*.ipynb

clean:
	rm -rf $(VENV) build *.egg-info
