"""The package layering the architecture promises, read from the source: the reusable packages
never import `pipeline`, the configuration knows nothing of ablations, plugins are imported in
one place, and no production module carries a test hook."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "transforms", "datasets", "trainers")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["transforms", "datasets", "trainers"])
def test_the_reusable_packages_never_import_pipeline(package):
    offenders = {path.relative_to(ROOT).as_posix(): sorted(m for m in imported_modules(path) if m.split(".")[0] == "pipeline") for path in sources(package)}
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def test_the_configuration_imports_nothing_from_the_ablation_package():
    assert not [module for module in imported_modules(ROOT / "pipeline" / "config.py") if module.startswith("pipeline.ablation")]


def test_plugins_are_imported_in_one_place():
    importing = [path.relative_to(ROOT).as_posix() for path in sources(*PACKAGES) if "importlib.import_module(" in path.read_text(encoding="utf-8")]
    assert importing == ["pipeline/plugins.py", "trainers/__init__.py"]  # the second: its own modules, by fixed names


@pytest.mark.parametrize("command", [["--help"], ["show-config"], ["cache", "ls"], ["show-config", "data.source=csv:t.csv", "model.type=mlp"]])
def test_commands_that_train_nothing_start_without_torch_or_scikit_learn(tmp_path, command):
    """Start-up is what a user waits for on every command: torch and scikit-learn take seconds to
    import, and these commands need neither (a recipe that is given does need torch: it is built)."""
    probe = (
        "import sys, contextlib, io\n"
        "from pipeline.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    try: main({command!r})\n"
        "    except SystemExit: pass\n"
        "print(sorted(name for name in ('torch', 'sklearn', 'scipy', 'pandas', 'matplotlib') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_no_production_module_reads_a_test_hook():
    hooks = [path.relative_to(ROOT).as_posix() for path in sources(*PACKAGES) if "GAINSPLIT_TEST" in path.read_text(encoding="utf-8")]
    assert hooks == []
