"""Every code example in README.md and docs/*.md runs as written.

- A ```python block runs in the page's working folder. One whose first line is `# <name>.py`
  is a module the examples after it import: it is written to that file instead.
- A ```yaml block whose first line is `# <name>.yaml` is written to that file.
- In ```bash and ```console blocks every command (in a console block the lines after `$ `; the
  others are its output, not checked) must be `python -m pipeline ...`: it runs in-process
  through `pipeline.cli.main` and must exit with status 0, or with the status a
  `<!-- exit-status: N -->` line right above the block names.
- A block that is not meant to run (an install, torchrun, a Ray cluster, a YAML snippet) says
  so, and why, in a `<!-- no-test: reason -->` line right above it.

The blocks of a page run in order, in one temporary working folder; all pages share one
stage cache (`PIPELINE_CACHE_DIR`), so a training that several pages show runs once. Without a
GPU here, the examples run with `CUDA_VISIBLE_DEVICES` empty.
"""

from __future__ import annotations

import importlib
import re
import shlex
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Blocks in these languages run, or say why not; others (```text, plain ```) are output.
RUNNABLE = {"python", "py", "bash", "sh", "shell", "console", "yaml", "yml", "json"}
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
NO_TEST = re.compile(r"^<!--\s*no-test:(.*?)-->$")
EXIT_STATUS = re.compile(r"^<!--\s*exit-status:\s*(\d+)\s*-->$")
FILE_NAME = re.compile(r"^#\s*([\w.-]+\.(?:py|ya?ml))\s*$")
COMMAND = ["python", "-m", "pipeline"]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    skip: str | None  # the reason a `no-test` comment gives ('' when it gives none)
    exit_status: int

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def file_name(self) -> str | None:
        """`name.py` or `name.yaml` when the block's first line names the file it is."""
        first = self.code.split("\n", 1)[0]
        match = FILE_NAME.match(first.strip())
        return match.group(1) if match else None


def read_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, each with the comment right above it read."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence, language = opening.group(1), opening.group(2).lower()
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        above = index - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        comment = lines[above].strip() if above >= 0 else ""
        skip, status = NO_TEST.match(comment), EXIT_STATUS.match(comment)
        code = "\n".join(lines[index + 1 : end]) + "\n"
        blocks.append(Block(page, index + 1, language, code, skip.group(1).strip() if skip else None, int(status.group(1)) if status else 0))
        index = end + 1
    return blocks


def command_lines(block: Block) -> list[str]:
    """The commands of a shell block, continuation lines joined; a console block's output left out."""
    lines = block.code.splitlines()
    if block.language == "console":
        commands, continuing = [], False
        for line in lines:
            if line.startswith("$ ") or continuing:
                text = line[2:] if line.startswith("$ ") and not continuing else line
                if continuing:
                    commands[-1] = commands[-1][:-1] + " " + text
                else:
                    commands.append(text)
                continuing = commands[-1].rstrip().endswith("\\")
        lines = commands
    else:
        lines = block.code.replace("\\\n", " ").splitlines()
    return [line for line in lines if shlex.split(line, comments=True)]


def pipeline_arguments(block: Block, line: str) -> list[str]:
    words = shlex.split(line, comments=True)
    if words[:3] != COMMAND:
        raise AssertionError(
            f"{block.where}: `{line.strip()}` is not a `python -m pipeline` command; run only those in "
            "examples, or put `<!-- no-test: reason -->` above the block"
        )
    return words[3:]


def run_command(block: Block, arguments: list[str]) -> int:
    """`python -m pipeline ARGUMENTS` in this process; its exit status."""
    from datasets import DataWarning
    from pipeline.cli import main

    with warnings.catch_warnings():
        warnings.filterwarnings("always", category=DataWarning)  # what the examples' data says, not a failure
        try:
            return main(arguments)
        except SystemExit as exit:  # argparse's usage errors
            return exit.code if isinstance(exit.code, int) else 1


def run_block(block: Block, namespace: dict, folder: Path) -> None:
    if block.file_name:
        (folder / block.file_name).write_text(block.code, encoding="utf-8")
        importlib.invalidate_caches()  # a module the next command imports
        return
    if block.language in ("python", "py"):
        exec(compile(block.code, block.where, "exec"), namespace)
        return
    if block.language in ("bash", "sh", "shell", "console"):
        commands = command_lines(block)
        assert commands, f"{block.where}: a shell block without a command"
        for line in commands:
            status = run_command(block, pipeline_arguments(block, line))
            assert status == block.exit_status, f"{block.where}: `{line.strip()}` exited {status}, expected {block.exit_status}"
        return
    raise AssertionError(
        f"{block.where}: a {block.language} block runs only as a file its first line names (`# name.yaml`); "
        "otherwise put `<!-- no-test: reason -->` above it"
    )


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("docs-cache")


@pytest.fixture
def page_folder(tmp_path, shared_cache, monkeypatch):
    """A working folder for one page's examples: its own files and records, the shared cache,
    and whatever the examples register (sources, models, transforms, plugin modules) undone after."""
    import datasets.base
    import trainers.registry
    import transforms.base

    registries = [datasets.base.SOURCES, trainers.registry.MODELS, transforms.base.TRANSFORMS]
    saved = [dict(registry) for registry in registries]
    modules = set(sys.modules)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PIPELINE_CACHE_DIR", str(shared_cache))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    yield tmp_path
    for registry, before in zip(registries, saved):
        registry.clear()
        registry.update(before)
    for name in set(sys.modules) - modules:
        if (tmp_path / f"{name}.py").exists():
            del sys.modules[name]


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_the_page_s_examples_run(page, page_folder):
    namespace = {"__name__": "__docs__"}
    ran = 0
    for block in read_blocks(page):
        if block.skip is not None or block.language not in RUNNABLE:
            continue
        run_block(block, namespace, page_folder)
        ran += 1
    if page.name == "README.md":
        assert ran >= 4, "the README's quick start, cache, ablation and API examples run"


def test_every_opt_out_says_why():
    silent = [block.where for page in PAGES for block in read_blocks(page) if block.skip == ""]
    assert silent == [], "a `<!-- no-test: reason -->` without its reason"


def test_every_block_that_could_run_runs_or_opts_out():
    """A block in a language this test does not know how to run would be skipped silently."""
    unknown = [
        f"{block.where} ({block.language})"
        for page in PAGES
        for block in read_blocks(page)
        if block.skip is None and block.language not in RUNNABLE | {"", "text"}
    ]
    assert unknown == [], "use ```text for output, or a runnable language, or opt out"


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; reference goes to docs/"
    assert not re.search(r"\bcommit [0-9a-f]{7,}\b", "\n".join(lines)), "history goes to CHANGELOG.md"
