# Two commands do all the set-up (see README.md):
#   make lab    create/refresh .venv, then open JupyterLab on notebooks/
#   make test   create/refresh .venv, then check the labs' student versions and run the
#               whole suite: unit + interop tests, nbval over notebooks/ and labs/
PYTHON ?= python3
# The folder JupyterLab opens: `make lab DIR=labs` for the labs, DIR=build/labs for the
# student versions (`make student` writes them).
DIR    ?= notebooks/
# Jupyter refuses to run as root without --allow-root (a container's default user is root).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: lab test bench venv clean student

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "lablib needs Python >= 3.11, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	$(PY) -m lablib.services.mqtt install >/dev/null   # amqtt, in a venv of its own (see lablib/services/mqtt.py)
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lablib)" >/dev/null
	touch $(STAMP)

venv: $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 $(ROOT_FLAG) $(DIR)

test: $(STAMP)
	$(PY) -m labs.make_student --check
	$(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m benchmarks

# build/labs/ and build/notebooks/ (chapters with question markers; the others are skipped)
student: $(STAMP)
	$(PY) -m labs.make_student

clean:
	rm -rf $(VENV) build *.egg-info
