"""Peak memory of a benchmark's child process.

``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is not the child's own peak on Linux: the kernel carries the
high-water mark of the address space a process had before ``exec`` (for a child started by ``fork``/``vfork``,
the parent's) into ``ru_maxrss``, so a fine-tune started from a large benchmark process reported the
benchmark's size (4.25 GB, where the fine-tune itself peaked at 2.6 GB). ``VmHWM`` in ``/proc/self/status``
belongs to the address space made by ``exec``.
"""

from __future__ import annotations

import resource


def peak_rss_kb() -> int:
    """This process's peak resident set since its ``exec`` in KiB (``VmHWM``; ``ru_maxrss`` without /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
