"""Print the project's dependencies from pyproject.toml, one per line, for image builds.

    python deploy/requirements.py                       # [project] dependencies
    python deploy/requirements.py --extra gpu           # ... plus an extra's
    python deploy/requirements.py --without torch torchvision --extra vllm

Dockerfile.vllm uses `--without torch torchvision`: vLLM pins its own torch, so that image
installs vLLM first and then everything else curator needs except the torch pins.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def name_of(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not m:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", m.group(1)).lower()


def requirements(extras: list[str], without: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"no extra {extra!r} in {pyproject} (have: {', '.join(sorted(optional))})")
        reqs += optional[extra]
    drop = {name_of(w) for w in without}
    return [r for r in reqs if name_of(r) not in drop]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extra", action="append", default=[], help="include this optional-dependencies group")
    ap.add_argument("--without", nargs="*", default=[], help="leave out these distributions")
    args = ap.parse_args(argv)
    sys.stdout.write("".join(r + "\n" for r in requirements(args.extra, args.without)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
