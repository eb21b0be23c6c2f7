"""Docs stay true to the code: the configuration reference and the README's commands."""

from __future__ import annotations

import importlib.util

from tests.support import ROOT


def test_configuration_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_config_docs", ROOT / "scripts" / "gen_config_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == module.render(), "docs/configuration.md is stale: run python scripts/gen_config_docs.py"


def test_readme_shows_the_two_commands_first() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    assert "make run" in first_block and "make test" in first_block
