import textwrap

import pytest

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
