"""Freed host memory is kept for reuse while training on the CPU, counted in page faults over
twenty steps of a fused array, in a fresh process each (malloc's settings are the process's own)."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import trainers.loop
from trainers import Split, fit
from trainers.host_memory import USER_SETTINGS

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")

FAULTS_OVER_20_STEPS = textwrap.dedent(
    """
    import resource, sys
    import torch
    from trainers.arrays import fused_array
    from trainers.fused import fused_cross_entropy
    from trainers.host_memory import keep_freed_memory

    print(keep_freed_memory() if sys.argv[1] == "keep" else None)
    specs = [{"channels": [32, 64], "hidden": [128], "batch_norm": False}] * 4
    array = fused_array(specs, [{"name": "adam", "lr": 1e-3}] * 4, [0, 1, 2, 3], (1, 8, 8), 10, torch.device("cpu"))
    x, y = torch.randn(4, 64, 1, 8, 8), torch.randint(0, 10, (4, 64))

    def step():
        loss = fused_cross_entropy(array.module(x), y).sum()
        array.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        array.optimizer.step()

    for _ in range(3):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str, **env: str) -> tuple[str, int]:
    """Whether the thresholds were raised, and the page faults of twenty steps after three."""
    clean = {key: value for key, value in os.environ.items() if key not in USER_SETTINGS}
    done = subprocess.run(
        [sys.executable, "-c", FAULTS_OVER_20_STEPS, mode], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    applied, faults = done.stdout.split()
    return applied, int(faults)


@glibc_only
def test_a_step_reuses_the_memory_the_last_one_freed():
    applied, left = _faults("leave")
    assert applied == "None"
    applied, kept = _faults("keep")
    assert applied == "True"
    # glibc's default hands each step's activations back and faults them in again next step
    # (about 1,500 faults a step on the machine this was written on); kept, they are reused.
    assert kept <= max(left / 10, 1000), (left, kept)


@glibc_only
def test_malloc_settings_the_user_made_are_left_alone():
    applied, _ = _faults("keep", MALLOC_TRIM_THRESHOLD_=str(128 * 1024))
    assert applied == "False"


@pytest.mark.parametrize("device, asked", [("cpu", 1), ("meta", 0)])
def test_training_asks_for_it_on_the_cpu_only(monkeypatch, device, asked):
    calls = []
    monkeypatch.setattr(trainers.loop, "keep_freed_memory", lambda: calls.append(True))
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    model = nn.Linear(4, 2)
    try:
        fit(model, Split(x, y), Split(x, y), torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, batch_size=16,
            device=torch.device(device), progress=False)
    except (NotImplementedError, RuntimeError):
        pass  # the meta device cannot train; it only has to get past the point where the CPU asks
    assert len(calls) == asked
