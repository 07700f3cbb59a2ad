"""The Ray executor gives the same ablation as the local one (a local Ray instance, 2 CPUs)."""

import sys

import pytest

from pipeline.ablation.design import AblationConfig
from pipeline.ablation.execute import run_ablation
from pipeline.ablation.executors import run_on_ray

SMALL = AblationConfig(
    design="full",
    seeds=[0, 1],
    factors={
        "scale.method": {"side": "data", "values": ["none", "standard"]},
        "model.dropout": {"side": "model", "values": [0.0, 0.3]},
    },
)


def fast_base():
    return {"train": {"epochs": 3}, "model": {"channels": [8], "hidden": [16]}}


@pytest.mark.slow
def test_ray_executor_matches_the_local_executor(tmp_path):
    pytest.importorskip("ray")
    local = run_ablation(fast_base(), [], SMALL, tmp_path / "local", tmp_path / "cache-local", jobs=2, progress=False)
    on_ray = run_ablation(
        fast_base(), [], SMALL, tmp_path / "ray", tmp_path / "cache-ray", progress=False,
        executor="ray", ray_options={"num_cpus": 2},
    )
    assert on_ray["stages"] == local["stages"]
    assert [v["test_accuracy"] for v in on_ray["variants"]] == [v["test_accuracy"] for v in local["variants"]]
    assert [e["sentence"] for e in on_ray["effects"] + on_ray["side_effects"]] == [
        e["sentence"] for e in local["effects"] + local["side_effects"]
    ]


def test_without_ray_the_message_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=r"pip install 'gainsplit\[ray\]'"):
        run_on_ray([], None, lambda: None)
