"""One rule for both paths (edge.mutation_rules): a change never runs script, whether an
author wrote it or a caller sent it."""

from __future__ import annotations

import pytest

from edge.config import MutationConfig
from edge.mutation_rules import script_risk


def attribute(name: str, value: str) -> MutationConfig:
    return MutationConfig(".cta", "set_attribute", value, attribute_name=name)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("onclick", "steal()"),
        ("ONERROR", "x"),
        ("onmouseover", ""),
        ("style", "background:url(x)"),
        ("srcdoc", "<script>x</script>"),
        ("href", "javascript:alert(1)"),
        ("href", "  JavaScript:alert(1)"),
        ("href", "java\tscript:alert(1)"),
        ("href", "\x01javascript:alert(1)"),
        ("href", "java\nscript:alert(1)"),
        ("src", "data:text/html,<script>x</script>"),
        ("action", "vbscript:msgbox"),
        ("formaction", "javascript:x"),
        ("xlink:href", "javascript:x"),
    ],
)
def test_changes_that_would_run_script_are_refused(name: str, value: str) -> None:
    assert script_risk(attribute(name, value)) is not None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("href", "https://buy.stripe.com/pro"),
        ("href", "/pricing#javascript:"),
        ("alt", "javascript: the good parts"),
        ("data-plan", "javascript:x"),
        ("title", "onclick"),
    ],
)
def test_ordinary_attributes_pass(name: str, value: str) -> None:
    assert script_risk(attribute(name, value)) is None


def test_other_actions_are_not_judged_by_it() -> None:
    assert script_risk(MutationConfig("h1", "set_content", "javascript:")) is None
