import ast
import json
import textwrap

import pytest

import pipeline.keys
from pipeline.keys import cache_key, canonical_json, source_fingerprint

BASE = dict(
    stage="scale",
    version="1",
    code="0" * 64,
    params={"method": "standard", "range": [0.0, 1.0], "eps": 1e-7},
    inputs={"collect": "a" * 64},
)


def test_golden_key_is_pinned():
    # If this fails, every user's cache is silently invalidated: change KEY_RECIPE_VERSION on purpose instead.
    assert cache_key(**BASE) == "2e2a6fdced2a97b8bd409ef39d86dbb9b396abedca62d3d96e291c3fc23909b4"


def test_key_ignores_mapping_order():
    reordered = dict(BASE, params={"eps": 1e-7, "range": [0.0, 1.0], "method": "standard"})
    assert cache_key(**reordered) == cache_key(**BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"stage": "train"},
        {"version": "2"},
        {"code": "1" * 64},
        {"params": {"method": "minmax", "range": [0.0, 1.0], "eps": 1e-7}},
        {"params": {"method": "standard", "range": [0.0, 1.0], "eps": 1e-8}},
        {"inputs": {"collect": "b" * 64}},
        {"inputs": {"collect": "a" * 64, "augment": "c" * 64}},
    ],
)
def test_key_changes_with_every_input(change):
    assert cache_key(**{**BASE, **change}) != cache_key(**BASE)


def test_canonical_json_refuses_nan():
    with pytest.raises(ValueError):
        canonical_json({"lr": float("nan")})


CODE = textwrap.dedent(
    '''
    def scale(x, s):
        """Scale x."""
        return x * s
    '''
)


def test_fingerprint_ignores_comments_blank_lines_and_docstrings():
    cosmetic = textwrap.dedent(
        '''
        # a comment that does not change behaviour

        def scale(x,   s):
            """A reworded docstring."""

            return x * s  # trailing comment
        '''
    )
    assert source_fingerprint(cosmetic) == source_fingerprint(CODE)


@pytest.mark.parametrize("edit", ["return x * s * 1", "return x / s", "return s * x"])
def test_fingerprint_sees_any_code_change(edit):
    assert source_fingerprint(CODE.replace("return x * s", edit)) != source_fingerprint(CODE)


def test_a_module_file_is_read_again_when_it_changes_and_not_while_it_stays(tmp_path, monkeypatch):
    import importlib.util
    import os

    path = tmp_path / "user_model.py"
    path.write_text(CODE)
    spec = importlib.util.spec_from_file_location("user_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _fresh_process(monkeypatch)
    fingerprinted = []
    monkeypatch.setattr(pipeline.keys, "source_fingerprint", lambda source: fingerprinted.append(source) or source_fingerprint(source))
    first = pipeline.keys.module_fingerprint(module)
    assert first == source_fingerprint(CODE)

    # Changed within the clock's resolution: the same size and modification time, read again.
    stamp = os.stat(path).st_mtime_ns
    path.write_text(CODE.replace("x * s", "x / s"))
    os.utime(path, ns=(stamp, stamp))
    divided = pipeline.keys.module_fingerprint(module)
    assert divided != first and len(fingerprinted) == 2

    settled = stamp - 10**10  # modified ten seconds ago: read once, then remembered
    os.utime(path, ns=(settled, settled))
    assert pipeline.keys.module_fingerprint(module) == divided and len(fingerprinted) == 3
    assert pipeline.keys.module_fingerprint(module) == divided and len(fingerprinted) == 3
    path.write_text(CODE)  # changed again: the new time shows it
    os.utime(path, ns=(settled + 1, settled + 1))
    assert pipeline.keys.module_fingerprint(module) == first and len(fingerprinted) == 4


def _fresh_process(monkeypatch):
    """As a new process starts: nothing remembered in memory."""
    monkeypatch.setattr(pipeline.keys, "_REMEMBERED", {})
    monkeypatch.setattr(pipeline.keys, "_BY_FILE", {})
    pipeline.keys.source_fingerprint.cache_clear()


def test_fingerprints_are_remembered_in_the_cache_folder_and_give_the_same_keys(tmp_path, monkeypatch):
    from pipeline.config import load_config
    from pipeline.runner import plan_stages

    config = load_config(None, [])
    _fresh_process(monkeypatch)
    with pipeline.keys.remembered_fingerprints(tmp_path):
        parsed = [step.code for step in plan_stages(config)]
    stored = json.loads((tmp_path / pipeline.keys.FINGERPRINTS_FILE).read_text())
    assert stored["recipe"] == pipeline.keys._fingerprint_recipe() and len(stored["fingerprints"]) >= 10

    _fresh_process(monkeypatch)
    monkeypatch.setattr(pipeline.keys.ast, "parse", lambda *args, **kwargs: pytest.fail("parsed a module it remembered"))
    with pipeline.keys.remembered_fingerprints(tmp_path):
        assert [step.code for step in plan_stages(config)] == parsed


@pytest.mark.parametrize("content", ["{not json", '{"recipe": "another", "fingerprints": {}}', "[]"])
def test_a_fingerprints_file_unreadable_or_of_another_recipe_is_passed_over_and_replaced(tmp_path, monkeypatch, content):
    (tmp_path / pipeline.keys.FINGERPRINTS_FILE).write_text(content)
    _fresh_process(monkeypatch)
    with pipeline.keys.remembered_fingerprints(tmp_path):
        fingerprint = source_fingerprint(CODE)
    assert fingerprint == pipeline.keys.sha256_text(ast.dump(pipeline.keys._strip_docstrings(ast.parse(CODE)), annotate_fields=True, include_attributes=False))
    stored = json.loads((tmp_path / pipeline.keys.FINGERPRINTS_FILE).read_text())
    assert stored["fingerprints"] == {pipeline.keys.sha256_text(CODE): fingerprint}


def test_cache_verify_removes_a_fingerprints_file_a_killed_writer_left(tmp_path):
    from pipeline.cache import CacheStore
    from pipeline.maintenance import verify

    left = tmp_path / f".{pipeline.keys.FINGERPRINTS_FILE}.0123abcd.tmp"
    left.write_text("{")
    assert verify(CacheStore(tmp_path)).temp_removed == [left.name] and not left.exists()
