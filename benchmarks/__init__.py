"""On-demand benchmarks: lablib against the reference libraries (never part of the test suite).

Run ``python -m benchmarks`` (or ``make bench``); see ``benchmarks/README.md`` for what each
benchmark measures and how to read the ratios.  This module holds the shared helpers: a timer
that reports the median of several repeats with the garbage collector off, and a plain-text
table printer.
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import time
from typing import Callable, Sequence

__all__ = ["timed", "compare", "format_table", "ratio", "reap"]


def reap(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Wait for a server or worker process that was told to stop (its stdin closed, or an exit
    command sent); kill it if it has not gone within ``timeout`` seconds."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def timed(run: Callable[[], object]) -> float:
    """Wall time (seconds) of one ``run()``, with the garbage collector off.

    Off, so that a collection triggered by one library's allocations does not land in the
    other library's time.
    """
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    finally:
        gc.enable()


def compare(lablib: Callable[[], object], reference: Callable[[], object], repeats: int,
            floor: Callable[[], object] | None = None) -> tuple[float, ...]:
    """Median times of ``lablib()`` and ``reference()`` (and ``floor()``, if given) over
    ``repeats`` runs each.

    They alternate (lablib, reference, floor, lablib, ...), so a burst of load from another
    process on the machine slows all of them down instead of skewing the ratio.  Each timed
    run comes right after an untimed one of the same function: the memory allocator is then
    in the state that function leaves it in (the memory it frees, it gets back), not in the
    state the other library left.  Without that, large payloads are timed mostly by whether
    the C library happened to return the previous run's memory to the system, so that every
    new page costs a page fault.
    """
    runs = [lablib, reference] + ([floor] if floor is not None else [])
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, samples in zip(runs, times):
            run()  # warm-up, untimed
            samples.append(timed(run))
    return tuple(statistics.median(samples) for samples in times)


def ratio(reference_time: float, lablib_time: float) -> str:
    """Reference time / lablib time: ``2.00x`` means lablib takes half the time."""
    return f"{reference_time / lablib_time:.2f}x"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table; the first column is left-aligned, the others right-aligned."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        out = [str(cells[0]).ljust(widths[0])]
        out += [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
