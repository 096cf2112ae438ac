"""Layout rules the code keeps: test support stays out of the runtime, split packages stay small."""
import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def test_runtime_never_imports_test_support():
    # curator.testing is test and benchmark support: the pipeline (curator/ and stages/) must run without it
    offenders = []
    for base in ("curator", "stages"):
        for path in sorted((ROOT / base).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] == ("curator", "testing"):
                continue
            for line, name in _imports(ast.parse(path.read_text(), str(rel))):
                if name == "curator.testing" or name.startswith("curator.testing."):
                    offenders.append(f"{rel}:{line} imports {name}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("package", ["curator/config", "curator/dedup", "curator/report"])
def test_split_packages_have_no_module_over_600_lines(package):
    sizes = {p.name: len(p.read_text().splitlines()) for p in (ROOT / package).glob("*.py")}
    assert sizes and max(sizes.values()) <= 600, sizes
