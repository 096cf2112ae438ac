"""Regenerate docs/config.md from the config model (the single source of the options).

    python tools/gen_config_docs.py          # rewrite docs/config.md
    python tools/gen_config_docs.py --check  # exit 1 if it is out of date (a test runs this)

Machine-specific defaults are shown for a user whose home is /home/you.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "config.md"
HEADER = """# Configuration reference

Every option of a run, with its default and meaning. This file is generated from the
pydantic model in `curator/config.py` by `python tools/gen_config_docs.py` (a test checks
it is current); `curator config --defaults` prints the same text.

Use it three ways, later ones winning:

```bash
curator config --defaults > my.yaml                        # a commented file to edit
curator run -i IN -o OUT --config my.yaml                   # YAML file
curator run -i IN -o OUT --set stages.split.method=fixed    # one key (repeatable)
```

Each run writes its resolved config to `<output>/config.yaml`, with its content hash and
its resume key; which changed keys a rerun into the same output redoes from the manifest
and which need `--force`: [first-hour.md](first-hour.md).

```yaml
"""


def render() -> str:
    env = {k: v for k, v in os.environ.items() if k != "CURATOR_MODEL_DIR"}
    env["HOME"] = "/home/you"
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-m", "curator", "config", "--defaults"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    return HEADER + out.rstrip("\n") + "\n```\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not DOC.exists() or DOC.read_text() != text:
            print("docs/config.md is out of date: run python tools/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
