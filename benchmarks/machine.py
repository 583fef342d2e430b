"""What machine a benchmark ran on, recorded in its result file and printed beside its figures.

Machines of the same kind here differ by up to 3x per training epoch (an AMD EPYC without AVX-512
against a Xeon with AMX tiles), and a results directory collects files written on different ones,
so a single "Machine" line for the whole report would mislabel some of them. Every script records
its own; ``report.py`` prints it under each section.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str | None, set[str]]:
    """The first processor's model name and flags (Linux); (None, empty) where there is no such file."""
    try:
        text = path.read_text()
    except OSError:
        return None, set()
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if model is not None and flags:
            break
    return model, flags


def describe() -> dict[str, Any]:
    """The facts that move this project's figures: CPU model, cores, the vector units torch uses, memory."""
    model, flags = _cpuinfo()
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    facts: dict[str, Any] = {
        "cpu": model or platform.processor() or None,
        "cpus": os.cpu_count(),
        "amx": "amx_tile" in flags,
        "avx512": "avx512f" in flags,
        "memory_gb": round(pages * page_size / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import torch

        facts["torch"] = torch.__version__
    except ImportError:  # the report runs without torch
        pass
    return facts


def summary(machine: dict[str, Any] | None) -> str:
    """One line for the report; says so where a result file predates this record."""
    if not machine or not machine.get("cpu"):
        cores = f"{machine['cpus']} cores; " if machine and machine.get("cpus") else ""
        return f"Machine: {cores}CPU model not recorded (the result predates `benchmarks/machine.py`)."
    units = [u for u, on in (("AMX", machine.get("amx")), ("AVX-512", machine.get("avx512"))) if on]
    parts = [
        f"{machine['cpu']}, {machine.get('cpus')} cores",
        ("with " + " and ".join(units)) if units else "no AVX-512 or AMX",
        f"{machine['memory_gb']} GB" if machine.get("memory_gb") else None,
        f"Python {machine['python']}" if machine.get("python") else None,
        f"torch {machine['torch']}" if machine.get("torch") else None,
    ]
    return "Machine: " + "; ".join(p for p in parts if p) + "."
