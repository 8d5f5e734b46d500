"""What a child that a library forks inside a compresskit process must not inherit.

OpenVINO's telemetry forks a short-lived child (``multiprocessing``, fork start method, from a thread pool) on
each ``ov.convert_model`` and NNCF call, to post one HTTP request. The child is a copy of the whole process, and
it once hung forever — and ``compresskit run`` with it, after printing its report, because ``multiprocessing``
joins its children at exit:

* Python's garbage collector ran in the child and collected a reference cycle, made in the parent, that held
  an OpenVINO compiled model; its destructor waits on its stream executor's condition variable for threads a
  forked child does not have (a futex wait that never returns). So the child freezes every object it
  inherited (``gc.freeze``): it never collects them, the parent does.
* The CLI's SIGTERM/SIGINT handlers (``cli_errors``) are Python-level: a child stuck in native code never runs
  them, so the parent's ``terminate()`` after its 3 s timeout did nothing. The child gets the default handlers
  back when the handlers are ours.

(Run-folder locks are dropped in the child by ``lock``.) Registered on ``import compresskit``.
"""

from __future__ import annotations

import gc
import os
import signal

OURS = "compresskit.cli_errors"  # the module whose signal handlers a forked child resets


def _after_fork_in_child() -> None:
    gc.freeze()
    for signum in (signal.SIGTERM, signal.SIGINT):
        if getattr(signal.getsignal(signum), "__module__", None) == OURS:
            signal.signal(signum, signal.SIG_DFL)


os.register_at_fork(after_in_child=_after_fork_in_child)
