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
