"""`python -m pipeline ARGS` with a fault injected, for the tests that kill a run midway.

Usage: python tests/inject_fault.py FAULT ARGS..., where FAULT is
  kill-after-epoch=N     SIGKILL right after epoch N of a training (and its checkpoint)
  kill-during-write=S    SIGKILL while writing stage S's entry, after its first array file
The pipeline's own code carries no such hook: the fault is patched in here.
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pipeline.cache  # noqa: E402
import trainers.loop  # noqa: E402
from pipeline.cli import main  # noqa: E402


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after_epoch(after: int) -> None:
    fit_array = trainers.loop.fit_array

    def fit_array_then_die(*args, **kwargs):
        kwargs["on_epoch_end"] = lambda epoch: kill() if epoch == after else None
        return fit_array(*args, **kwargs)

    trainers.loop.fit_array = fit_array_then_die


def kill_during_write(stage: str) -> None:
    write_array = pipeline.cache.write_array

    def write_then_die(path: Path, array) -> dict:
        line = write_array(path, array)
        folder = Path(path).parent
        if folder.name.startswith(pipeline.cache.TEMP_PREFIX) and folder.parent.name == stage:
            kill()
        return line

    pipeline.cache.write_array = write_then_die

FAULTS = {"kill-after-epoch": lambda value: kill_after_epoch(int(value)), "kill-during-write": kill_during_write}

if __name__ == "__main__":
    name, value = sys.argv[1].split("=", 1)
    FAULTS[name](value)
    sys.exit(main(sys.argv[2:]))
