"""What every benchmark reports about the machine it ran on."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo (or what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(*packages: str) -> list[tuple[str, str]]:
    """Return (label, value) pairs: date, CPU, cores, load, OS, Python and package versions."""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return [
        ("Date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", cpu_model()),
        ("Cores", str(os.cpu_count())),
        ("Load average at start", load),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        *((name, version(name)) for name in packages),
    ]
