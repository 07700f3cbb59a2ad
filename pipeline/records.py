"""Run records: `runs/<id>/run.json` and `history.csv`, written atomically."""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import os
import platform
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pipeline.files import write_atomic
from trainers.loop import HISTORY_COLUMNS


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions and hardware that a result depends on; `device` is where the run trained."""
    import numpy
    import torch

    trained_on_cuda = device is not None and device.startswith("cuda")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "sklearn": importlib.metadata.version("scikit-learn"),
        "cuda_available": torch.cuda.is_available(),
        "cuda_device": torch.cuda.get_device_name(torch.device(device)) if trained_on_cuda else None,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "device": device,
        "host": platform.node(),
        "ray_node": _ray_node(),
    }


def _ray_node() -> str | None:
    """The Ray node this process runs on, inside a Ray task (several nodes may share a host)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


def history_csv(history: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def write_run_record(runs_dir: Path, record: dict[str, Any], history: list[dict[str, Any]]) -> Path:
    """Create `runs_dir/<run-id>/` with `run.json` and `history.csv`; return the folder.

    A failed write (a full disk) removes the folder, so no run folder lacks its record."""
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    run_dir = runs_dir / run_id
    full = {"run_id": run_id, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}
    full["environment"] = {**environment(record.get("device")), "argv": sys.argv}
    run_dir.mkdir(parents=True)
    try:
        write_atomic(run_dir / "history.csv", history_csv(history))
        write_atomic(run_dir / "run.json", json.dumps(full, indent=2))
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir
