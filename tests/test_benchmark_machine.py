"""The machine record benchmarks write beside their figures (benchmarks/machine.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench_machine", Path(__file__).resolve().parents[1] / "benchmarks" / "machine.py")
machine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(machine)

CPUINFO = """processor\t: 0
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse avx2 fma
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse avx2 fma amx_tile
"""


def test_cpuinfo_reads_the_first_processors_model_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    model, flags = machine._cpuinfo(path)
    assert model == "AMD EPYC 7B13"
    assert "avx2" in flags and "amx_tile" not in flags  # the second processor's flags are not read


def test_cpuinfo_without_the_file_is_empty(tmp_path: Path) -> None:
    assert machine._cpuinfo(tmp_path / "missing") == (None, set())


def test_summary_names_the_vector_units_or_their_absence() -> None:
    xeon = {"cpu": "Intel(R) Xeon(R) Processor", "cpus": 2, "amx": True, "avx512": True, "memory_gb": 23.6, "python": "3.11.7"}
    epyc = {"cpu": "AMD EPYC 7B13", "cpus": 2, "amx": False, "avx512": False}
    assert machine.summary(xeon) == "Machine: Intel(R) Xeon(R) Processor, 2 cores; with AMX and AVX-512; 23.6 GB; Python 3.11.7."
    assert machine.summary(epyc) == "Machine: AMD EPYC 7B13, 2 cores; no AVX-512 or AMX."


def test_summary_of_a_result_written_before_the_record_says_so() -> None:
    assert "not recorded" in machine.summary({"cpus": 2})
    assert "not recorded" in machine.summary(None)


def test_describe_records_this_machine() -> None:
    facts = machine.describe()
    assert facts["cpus"] and facts["memory_gb"] > 0 and facts["python"]
    assert machine.summary(facts).startswith("Machine: ")
