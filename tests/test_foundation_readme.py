"""The README's commands work: every bash block marked `<!-- tested -->` runs, in order, from the
project root with the project's virtualenv first on PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tested_blocks() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- tested -->\s*```bash\n(.*?)```", text, flags=re.S)
    return [
        [ln.split("  #")[0].strip() for ln in b.splitlines() if ln.strip() and not ln.startswith("#")]
        for b in blocks
    ]


def test_readme_names_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text and "```mermaid" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("block", range(len(_tested_blocks())))
def test_readme_block_runs(block: int, tmp_path: Path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "RECSYS_CLUSTER_DIR": str(tmp_path / "cluster"),
        "RECSYS_RUNS_ROOT": str(tmp_path / "runs"),
    }
    commands = _tested_blocks()[block]
    try:
        for cmd in commands:
            proc = subprocess.run(
                cmd, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
            )
            assert proc.returncode == 0, (
                f"README command failed: {cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
    finally:  # never leave a cluster behind if a command in the middle failed
        for cmd in commands:
            if "cluster/local/start.sh" in cmd:
                port = re.search(r"--port (\d+)", cmd).group(1)
                subprocess.run(
                    [str(ROOT / "cluster/local/stop.sh"), "--port", port], env=env, capture_output=True
                )
