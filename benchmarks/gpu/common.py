"""What the GPU run's Python parts share: the carried folder and the commit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

#: The ignored folder ``make gpu-carry`` fills: wheels/, data/, commit.txt.
CARRY = Path(__file__).resolve().parents[2] / ".gpu-carry"


def carried_commit() -> str | None:
    """The commit ``make gpu-carry`` recorded (the device gets no ``.git``);
    in a checkout without that file, git's own answer."""
    path = CARRY / "commit.txt"
    if path.is_file():
        return path.read_text().strip()
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=CARRY.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def fill_commit(environment: dict) -> dict:
    """``environment`` with its ``git_commit`` taken from the carried file when
    git could not tell (no ``.git`` on the device)."""
    if not environment.get("git_commit"):
        environment["git_commit"] = carried_commit()
    return environment


def update_json(path: Path, key: str, value) -> None:
    """Sets ``key`` in the JSON object in ``path`` (created if absent), so that
    the parts of one backend share one file: the run may return 8 files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=1, allow_nan=False))
