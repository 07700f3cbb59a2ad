"""Start-up: how long the commands a user waits on take as fresh processes, against Python doing
nothing and against `import torch`, in interleaved rounds (the median of each).

Prints each command's median seconds and the heavy libraries it imported; the last two lines are
`startup_ratio=<show-config / python -c pass>` and `cached_run_over_import_torch=<a fully cached
pipeline run / python -c "import torch">`. The commands freeze the garbage collector before they
exit, which `import torch` alone does not: `cached_run_over_frozen_import_torch` compares with an
`import torch` that exits the same way, so it shows what gainsplit adds on top of torch.

Every command runs once before the timed rounds, with bytecode written to a temporary folder
(`PYTHONPYCACHEPREFIX`), so each round reads compiled modules as an installed package does, even
where `PYTHONDONTWRITEBYTECODE` is set.

    python benchmarks/bench_startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
HEAVY = ("torch", "sklearn", "scipy", "pandas", "matplotlib")


def commands(work: Path) -> dict[str, list[str]]:
    cached = ["--quiet", "--cache-dir", str(work / "cache"), "--runs-dir", str(work / "runs")]
    return {
        "python -c pass": [PYTHON, "-c", "pass"],
        "import torch": [PYTHON, "-c", "import torch"],
        "torch, frozen": [PYTHON, "-c", "import gc, torch; gc.freeze()"],
        "--help": [PYTHON, "-m", "pipeline", "--help"],
        "show-config": [PYTHON, "-m", "pipeline", "show-config"],
        "cache ls": [PYTHON, "-m", "pipeline", "cache", "ls", "--cache-dir", str(work / "cache")],
        "explain": [PYTHON, "-m", "pipeline", "explain", "--cache-dir", str(work / "cache")],
        "cached run": [PYTHON, "-m", "pipeline", "run", *cached],
    }


def bytecode_environment(work: Path) -> dict[str, str]:
    """This environment, with bytecode written to and read from `work/bytecode`."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return {**environment, "PYTHONPYCACHEPREFIX": str(work / "bytecode")}


def seconds(command: list[str], environment: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    return time.perf_counter() - started


def heavy_imports(command: list[str], environment: dict[str, str]) -> list[str]:
    """Which of the heavy libraries the command imports (by `-X importtime`)."""
    traced = subprocess.run([command[0], "-X", "importtime", *command[1:]], check=True, capture_output=True, text=True, env=environment).stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in traced.splitlines() if "|" in line}
    return [name for name in HEAVY if name in imported]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs, environment = commands(work), bytecode_environment(work)
        for name in ("cached run", *runs):  # fills the cache, then every command's bytecode; errors shown
            subprocess.run(runs[name], check=True, stdout=subprocess.DEVNULL, env=environment)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, command in runs.items():
                times[name].append(seconds(command, environment))
        median = {name: statistics.median(values) for name, values in times.items()}
        print(f"{'command':<16} {'median s':>9}  heavy libraries imported")
        for name, command in runs.items():
            print(f"{name:<16} {median[name]:>9.3f}  {', '.join(heavy_imports(command, environment)) or '-'}")
    print(f"cached_run_over_frozen_import_torch={median['cached run'] / median['torch, frozen']:.2f}")
    print(f"startup_ratio={median['show-config'] / median['python -c pass']:.2f}")
    print(f"cached_run_over_import_torch={median['cached run'] / median['import torch']:.2f}")


if __name__ == "__main__":
    main()
