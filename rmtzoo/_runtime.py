"""Where a run executes: its CPU thread count and its device, one rule for ``train``, ``eval``,
``generate`` and ``demo`` (the CLI's ``--threads`` and ``--device``, the Python API's ``threads=`` and
``device=``).

Threads: PyTorch's default is one intra-op thread per physical core of the whole machine, whatever the
process may use or what else runs there. On a machine shared with other jobs that oversubscribes the
cores, and a small model spends most of its time waiting on its own threads. The default here is the
explicit ``OMP_NUM_THREADS`` when set, else the CPUs this process may run on (its affinity mask, which
SLURM, ``taskset`` and containers set) less the ones other processes keep busy (the 1-minute load
average), and at least one.
"""

from __future__ import annotations

import os

from rmtzoo._errors import RmtzooError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set, else the allowed CPUs not kept busy by other processes (>= 1)."""
    explicit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if explicit:
        try:
            return max(1, int(explicit))
        except ValueError:
            raise RmtzooError(f"OMP_NUM_THREADS: expected a positive integer, got {explicit!r}") from None
    cpus = available_cpus()
    try:
        busy = int(os.getloadavg()[0])  # whole runnable processes; this one is mostly idle at start
    except (AttributeError, OSError):
        busy = 0
    return max(1, min(cpus, cpus - busy))


def set_threads(threads: int | None = None) -> int:
    """Set PyTorch's intra-op thread count (``None``: :func:`default_threads`) and return it."""
    import torch

    if threads is None:
        threads = default_threads()
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise RmtzooError(f"threads: expected a positive integer, got {threads!r}")
    torch.set_num_threads(threads)
    return threads


def resolve_device(device: str | None = "auto", *, local_rank: int | None = None):
    """A ``torch.device`` from ``auto`` (CUDA, else Apple MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N``
    or ``mps``; a device that is not available here is one clear error. Under ``torchrun`` a bare
    ``cuda`` (or ``auto``) means this process's ``LOCAL_RANK`` GPU."""
    import torch

    name = "auto" if device is None else str(device).strip().lower()
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        parsed = torch.device(name)
    except (RuntimeError, ValueError):
        raise RmtzooError(f"device: unknown device {device!r}; use one of {DEVICE_CHOICES}") from None
    if parsed.type == "cpu":
        return torch.device("cpu")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise RmtzooError(f"device: {device!r} is not available here (no CUDA device); use cpu or auto")
        index = local_rank if parsed.index is None else parsed.index
        if index >= torch.cuda.device_count():
            raise RmtzooError(f"device: {device!r}: there are {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if parsed.type == "mps":
        if not _mps_available():
            raise RmtzooError(f"device: {device!r} is not available here (no Apple MPS device); use cpu or auto")
        return torch.device("mps")
    raise RmtzooError(f"device: {device!r} is not supported; use one of {DEVICE_CHOICES}")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
