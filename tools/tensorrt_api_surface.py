"""Write the Python API surface of TensorRT releases to tests/data/tensorrt_api/<version>.json.

TensorRT cannot be installed here (its -libs wheels fetch from elsewhere), but its Python bindings wheels
download from PyPI. Their extension module needs libnvinfer only for a dozen factory functions that are
resolved lazily, so it imports against empty stand-in libraries built here with the C compiler, and
`dir()` then lists exactly what each release defines, per class and enum, with the docstrings in which
NVIDIA marks names deprecated or ignored. No TensorRT code runs: nothing but names and docstrings is read.

    python tools/tensorrt_api_surface.py                       # the releases in DEFAULT_RELEASES
    python tools/tensorrt_api_surface.py tensorrt-cu12-bindings==10.8.0.43

The tests (tests/test_tensorrt_contract.py) run catmood's TensorRT code against a stand-in module that has
exactly one of these surfaces, for every JSON file in that folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "tensorrt_api"
# JetPack 6.0 (8.6), JetPack 6.1/6.2 (10.3), the last 10.x, the first and the latest 11.x.
DEFAULT_RELEASES = ("tensorrt_bindings==8.6.1", "tensorrt-cu12-bindings==10.3.0",
                    "tensorrt-cu12-bindings==10.16.1.11", "tensorrt-cu13-bindings==11.0.0.114",
                    "tensorrt-cu13-bindings==11.4.0.106")
# Every symbol the bindings take from libnvinfer / libnvonnxparser / libnvinfer_plugin (8.6 also has the
# Caffe and UFF parsers): resolved on first call only, so empty definitions let the module import.
STUB_C = """
void *createInferBuilder_INTERNAL(void) { return 0; }
void *createInferRefitter_INTERNAL(void) { return 0; }
void *createInferRuntime_INTERNAL(void) { return 0; }
void *createNvOnnxParser_INTERNAL(void) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void) { return 0; }
void *getBuilderPluginRegistry(void) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
void *getPluginRegistry(void) { return 0; }
int initLibNvInferPlugins(void) { return 0; }
void *_ZN11nvuffparser15createUffParserEv(void) { return 0; }
void _ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi(void) {}
void *_ZN14nvcaffeparser117createCaffeParserEv(void) { return 0; }
void _ZN14nvcaffeparser123shutdownProtobufLibraryEv(void) {}
"""
LIBRARIES = ("nvinfer", "nvonnxparser", "nvparsers", "nvinfer_plugin")
DEPRECATION = re.compile(r"\[DEPRECATED\][^\n]*|Deprecated in TensorRT[^\n]*|[^\n]*\bIgnored\b[^\n]*")

# Runs inside a child process with the stand-in libraries on LD_LIBRARY_PATH.
DUMP = r"""
import enum, inspect, json, re, sys
import tensorrt_bindings as trt
DEPRECATION = re.compile(sys.argv[1])

def note(text):
    # "(... [DEPRECATED] ...)" asides speak of another API (e.g. WORKSPACE's note on IAlgorithmSelector)
    found = DEPRECATION.search(re.sub(r"\([^()]*\[DEPRECATED\][^()]*\)", "", text or ""))
    return found.group(0).strip() if found else None

def blocks(doc, head):
    # 'NAME : text' member blocks of a pybind11 enum docstring, ':ivar name: text' blocks of a class one
    pattern = r"^\s*(\w+) : (.*?)(?=^\s*\w+ : |\Z)" if head == "enum" else r":ivar (\w+):(.*?)(?=:ivar |\Z)"
    return {m.group(1): m.group(2) for m in re.finditer(pattern, doc or "", re.S | re.M)}

surface = {}
for name in sorted(n for n in dir(trt) if not n.startswith("_")):
    obj = getattr(trt, name)
    if inspect.isclass(obj):
        members = sorted(m for m in dir(obj) if not m.startswith("_") or m == "__init__")
        is_enum = hasattr(obj, "__members__")
        entry = {"kind": "enum" if is_enum else "class", "members": members}
        if is_enum:
            entry["values"] = sorted(obj.__members__)
        doc_notes = {k: note(v) for k, v in blocks(obj.__doc__, "enum" if is_enum else "class").items()}
        for member in members:
            own = getattr(obj, member, None)
            text = note(getattr(own, "__doc__", "")) if callable(own) and not is_enum else None
            doc_notes[member] = doc_notes.get(member) or text
        deprecated = {k: v for k, v in doc_notes.items() if v and k in members}
        head = note(re.split(r"Members:|:ivar", obj.__doc__ or "")[0])
        if head:
            entry["deprecated_class"] = head
        if deprecated:
            entry["deprecated"] = deprecated
    elif callable(obj):
        entry = {"kind": "function"}
        if note(obj.__doc__):
            entry["deprecated"] = note(obj.__doc__)
    elif inspect.ismodule(obj):
        continue  # the bindings' own imports (os, sys, ctypes, ...)
    else:
        entry = {"kind": "value", "type": type(obj).__name__}
    surface[name] = entry
print(json.dumps({"tensorrt": trt.__version__, "names": surface}))
"""


def stub_libraries(folder: Path, major: str) -> Path:
    source = folder / "stub.c"
    source.write_text(STUB_C)
    libdir = folder / f"lib{major}"
    libdir.mkdir()
    for lib in LIBRARIES:
        soname = f"lib{lib}.so.{major}"
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(libdir / soname), f"-Wl,-soname,{soname}", str(source)],
                       check=True)
    return libdir


def surface_of(requirement: str, work: Path) -> dict:
    wheels = work / "wheels"
    py = f"{sys.version_info.major}{sys.version_info.minor}"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", py, "--platform", "manylinux_2_28_x86_64", "--platform",
                    "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", str(wheels), requirement],
                   check=True)
    name, version = requirement.split("==")
    wheel = next(w for w in wheels.glob("*.whl")
                 if w.name.lower().startswith(name.replace("-", "_").lower() + "-" + version))
    site = work / wheel.stem
    zipfile.ZipFile(wheel).extractall(site)
    libdir = stub_libraries(Path(tempfile.mkdtemp(dir=work)), version.split(".")[0])
    env = {**os.environ, "LD_LIBRARY_PATH": str(libdir), "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", DUMP, DEPRECATION.pattern], env=env, check=True,
                         capture_output=True, text=True, cwd=work)
    data = json.loads(out.stdout)
    data["wheel"] = wheel.name
    data["generated_by"] = "tools/tensorrt_api_surface.py"
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requirements", nargs="*", default=list(DEFAULT_RELEASES))
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for requirement in args.requirements:
            data = surface_of(requirement, Path(tmp))
            target = args.out / f"{data['tensorrt']}.json"
            target.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            names = data["names"]
            print(f"{requirement}: {len(names)} names, "
                  f"{sum(len(v.get('deprecated', {})) for v in names.values() if isinstance(v.get('deprecated'), dict))}"
                  f" deprecated members -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
