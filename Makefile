# The README's two commands are `make demo` and `make test`; both set up .venv/ first when needed.
# .venv/ is today's Blender: Python 3.13 (Blender 5.1 and newer), bpy 5.3, numpy 2. .venv-lts/ is the oldest
# supported one: Python 3.11 (Blender 4.2-5.0), bpy 4.2 LTS, numpy 1.26.
# A Python X.Y: pythonX.Y on the PATH if it runs, else pyenv's (pyenv's shim fails for a version not selected).
find_python = $(firstword $(foreach python,python$(1) $(wildcard $(shell pyenv root 2>/dev/null)/versions/$(1)*/bin/python$(1)),$(shell $(python) -c 'print("$(python)")' 2>/dev/null)))
PYTHON ?= $(call find_python,3.13)
LTS_PYTHON ?= $(call find_python,3.11)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
# The small rembg model the tests run offline (rembg's own u2netp.onnx, shipped inside a PyPI wheel).
U2NET_HOME := $(abspath $(VENV)/u2net)
export U2NET_HOME
export NUMBA_CACHE_DIR := $(abspath $(VENV)/numba-cache)

DEMO_IMAGE ?= examples/chair.png
DEMO_OUT ?= demo_out
# More batch options for the demo. The tiny offline test model has a surface only at its own threshold:
#   make demo TRIPOSR_MODEL=tests/fixtures/triposr-tiny-a DEMO_ARGS="--resolution 48 --threshold 0.4145"
DEMO_ARGS ?=

.PHONY: setup demo test test-lts gltf-validator browser bench lint extension release clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-server.txt requirements-ray.txt
	@test -n "$(PYTHON)" || { echo "Python 3.13 was not found: install it, or name it: make PYTHON=/path/to/python3.13"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# ONE pip command: bpy pins its numpy, and a separate install could let another package move it.
	$(PY) -m pip install -r requirements-dev.txt
	# rembg's first import compiles numba code for about a minute; do it once here, cached in NUMBA_CACHE_DIR.
	$(PY) -c "import rembg"
	touch $@

$(U2NET_HOME)/u2netp.onnx: scripts/fetch_test_models.py | $(STAMP)
	$(PY) scripts/fetch_test_models.py $(U2NET_HOME)

# Khronos' glTF-Validator (npm's build of it), which both test legs run on the GLB files written: in a folder
# of its own, so that neither leg waits for the other's venv.
GLTF_VALIDATOR := .node/node_modules/gltf-validator/package.json
$(GLTF_VALIDATOR):
	npm install --prefix .node --no-audit --no-fund --no-save gltf-validator@2.0.0-dev.3.10

gltf-validator: $(GLTF_VALIDATOR)

# Debian's Chromium, in which tests/test_contact_sheet.py opens the batch's contact sheet as a reviewer does:
# installed where apt-get can (as root); elsewhere that one test is skipped, outside CI.
browser:
	@command -v chromium >/dev/null 2>&1 || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } || \
	  echo "Chromium is not installed (apt-get install chromium): the contact sheet's browser test is skipped."

# Two test processes (pytest-xdist), each taking whole modules, so that a module's server or Ray serves all
# its tests: most tests wait on the processes they start (workers, servers, Blender), and the other process
# uses the time. Two, for CI's two cores; TEST_PROCESSES=0 runs them in this process.
TEST_PROCESSES ?= 2

test: $(STAMP) $(U2NET_HOME)/u2netp.onnx $(GLTF_VALIDATOR) browser
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile

# The Blender-side tests (marked `blender`) against the Blender 4.2 LTS bpy wheel (Python 3.11, numpy 1.26), in a
# venv of their own.
LTS_VENV := .venv-lts
LTS_STAMP := $(LTS_VENV)/.setup-done

$(LTS_STAMP): requirements.txt requirements-lts.txt requirements-server.txt
	@test -n "$(LTS_PYTHON)" || { echo "Python 3.11 was not found: install it, or name it: make LTS_PYTHON=/path/to/python3.11"; exit 1; }
	$(LTS_PYTHON) -m venv $(LTS_VENV)
	$(LTS_VENV)/bin/python -m pip install -r requirements-lts.txt
	touch $@

test-lts: $(LTS_STAMP) $(GLTF_VALIDATOR)
	$(LTS_VENV)/bin/python -m pytest -m blender

demo: $(STAMP)
	$(PY) -m triposr_blender.batch -- $(DEMO_IMAGE) --out $(DEMO_OUT) --format glb --overwrite --preview $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) scripts/bench.py

# dist/triposr_blender-<version>.zip, validated and built by Blender's own extension tool (from the bpy wheel).
extension: $(STAMP)
	$(PY) scripts/build_extension.py

# A release: the zip (validated by Blender's tool), its CHANGELOG.md entry checked, its SHA-256 beside it.
release: extension
	$(PY) scripts/release.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) $(LTS_VENV) .node build dist $(DEMO_OUT)
