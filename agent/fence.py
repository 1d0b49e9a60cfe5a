"""Fencing for adopted agents (launch/adopt.py): the file `incarnation` in an agent's folder names
the incarnation that owns the folder now. A node that adopts agent i writes k there before it
starts incarnation k; an older incarnation of agent i (its host was cut off, and it comes back)
reads it before each checkpoint, metrics row and stats file, and writes nothing once it is
superseded, so that it cannot overwrite what the adopter wrote. No file: incarnation 0 owns it
(every run without adoption)."""

from __future__ import annotations

import os
from pathlib import Path

FENCE_FILE = "incarnation"


def owner(folder: str | Path) -> int:
    """The incarnation that owns `folder` (0 when no node adopted the agent)."""
    try:
        return int((Path(folder) / FENCE_FILE).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def claim(folder: str | Path, incarnation: int) -> bool:
    """Make `incarnation` the owner of `folder`; False when another adopter claimed that
    incarnation first (an exclusive create of claim_<k>, so two nodes cannot adopt as one)."""
    folder = Path(folder)
    try:
        os.close(os.open(folder / f"claim_{incarnation}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    tmp = folder / f"{FENCE_FILE}.tmp{os.getpid()}"
    tmp.write_text(f"{incarnation}\n")
    os.replace(tmp, folder / FENCE_FILE)  # atomic: a reader sees the old number or the new one
    return True


def reset(folder: str | Path) -> None:
    """A run (or `--resume` of one) starts its agents as incarnation 0 again: forget the claims
    of an earlier run in this folder, whose processes are gone."""
    folder = Path(folder)
    for path in [folder / FENCE_FILE, *folder.glob("claim_*")]:
        path.unlink(missing_ok=True)
