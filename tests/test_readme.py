"""The README's transforms example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_transforms_example_runs(capsys):
    text = README.read_text()
    section = text.split("## Using transforms in your own project", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, str(README), "exec"), {})
    assert capsys.readouterr().out.strip() == "torch.Size([64, 1, 8, 8])"


def test_model_plugin_example_registers_a_network_that_fuses(tmp_path, monkeypatch):
    import sys

    import trainers.registry
    from pipeline.config import load_config
    from trainers.arrays import model_fuses
    from trainers.models import architecture

    section = README.read_text().split("## Your own network", 1)[1]
    (tmp_path / "my_models.py").write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = dict(trainers.registry.MODELS)
    try:
        config = load_config(None, ["model.plugins=[my_models]", "model.type=wide_mlp", "model.options={width: 256}", "model.dropout=0.3"])
        spec = config.model.model_dump(exclude={"sync_batch_norm"})
        assert architecture(spec, (1, 8, 8), 10)["parameters"] == (64 + 1) * 256 + 2 * 256 + 256 * 10 + 10
        assert model_fuses(spec, (1, 8, 8), 10)
    finally:
        trainers.registry.MODELS.clear()
        trainers.registry.MODELS.update(saved)
        sys.modules.pop("my_models", None)
