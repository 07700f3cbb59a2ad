"""What went wrong, in two kinds the command line tells apart by its exit status: a problem with
the input (`ConfigError` and any `ValueError`: usage, configuration, data; exit 2) and a run that
failed although its input may be fine (`RunFailed`; exit 1)."""

from __future__ import annotations


class RunFailed(RuntimeError):
    """A run that failed at run time: a diverged training, out of memory, an unreachable tracker."""
