"""How many BLAS threads the NumPy backend runs: as many as there are cores free.

OpenBLAS starts one thread per core and its threads spin while they wait
for work. With another job on the machine, they spin against it: an epoch
measured at 9-37 s instead of 0.94 s (issue 15). So the automatic choice
counts the cores that were idle over a tenth of a second, not the cores
that exist.
"""

import os
import time

from .errors import XpnetError

SAMPLE_SECONDS = 0.1
BLAS_ENV = "OPENBLAS_NUM_THREADS"


def asked_in_environment():
    """The count a user set in OPENBLAS_NUM_THREADS (taken as their --threads), or None."""
    asked = os.environ.get(BLAS_ENV, "")
    return int(asked) if asked.isdigit() and int(asked) >= 1 else None


def usable_cores():
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cpu_times():
    """(idle, total) jiffies summed over all cores, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return idle, sum(values[:8])


def idle_cores(seconds=SAMPLE_SECONDS):
    """How many cores' worth of time went unused over ``seconds`` (a float), or None if unknown."""
    before = _cpu_times()
    if before is None:
        return None
    time.sleep(seconds)
    after = _cpu_times()
    total = after[1] - before[1]
    if total <= 0:
        return None
    return (after[0] - before[0]) / total * (os.cpu_count() or 1)


def choose(requested=None, source=None):
    """(threads, why): ``requested`` when given (``source`` says where from: --threads by default),
    else the user's OPENBLAS_NUM_THREADS, else the cores free now (at least one)."""
    cores = usable_cores()
    if requested is not None:
        if requested < 1:
            raise XpnetError(f"--threads {requested} must be >= 1")
        return requested, source or f"--threads {requested}"
    if asked_in_environment() is not None:
        return asked_in_environment(), f"{BLAS_ENV}={asked_in_environment()}"
    idle = idle_cores()
    if idle is None:
        return cores, f"{cores} cores"
    # Half a core counts as free: a core busy 40% of the time still runs a
    # BLAS thread well, one busy 90% does not.
    free = max(1, min(cores, int(idle + 0.5)))
    return free, f"{free} of {cores} cores free"


class BlasThreads:
    """The BLAS libraries NumPy loaded, their thread count set with threadpoolctl."""

    def __init__(self):
        from threadpoolctl import ThreadpoolController

        self.blas = ThreadpoolController().select(user_api="blas")

    def set(self, threads):
        """Set the count for the rest of the process (threadpoolctl's limiter, never restored)."""
        self.blas.limit(limits=threads)
