"""The README states facts the code owns: keep them equal."""

from __future__ import annotations

import re
from pathlib import Path

from experiments.config import config_reference
from experiments.optimizer_listing import optimizer_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_optimizer_table_is_generated_from_the_registry():
    """The README's optimizer table is exactly `optimizer_markdown()` (regenerate it when the
    registry or an optimizer's defaults change)."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- optimizer-table:begin -->\n(.*?)\n<!-- optimizer-table:end -->", readme, re.S)
    assert match, "README lacks the optimizer-table markers"
    assert match.group(1) == optimizer_markdown()


def test_readme_commands_exist():
    """The two commands the README gives for a fresh clone, and CI's entry, are executable scripts
    and CI runs the README's test command."""
    for script in ("scripts/demo.sh", "scripts/test.sh", ".ci/run"):
        path = ROOT / script
        assert path.is_file() and path.stat().st_mode & 0o111, script
        assert f"{script}" in (ROOT / "README.md").read_text() or script == ".ci/run"
    assert "scripts/test.sh" in (ROOT / ".ci/run").read_text()


def test_config_keys_are_generated_from_the_schema():
    """The README's config-key list is exactly `config_reference()`, what `optbench train --help`
    prints (regenerate it when a config field, default or comment changes)."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- config-keys:begin -->\n```text\n(.*?)\n```\n<!-- config-keys:end -->", readme, re.S)
    assert match, "README lacks the config-keys markers"
    assert match.group(1) == config_reference()


def test_readme_stands_alone():
    """The README sends readers nowhere outside the repository, and every section it names exists."""
    readme = (ROOT / "README.md").read_text()
    assert "../" not in readme and "the issues" not in readme
    headings = set(re.findall(r"^#+ (.+)$", readme, re.MULTILINE))
    code = "\n".join((ROOT / "experiments" / name).read_text() for name in ("config.py", "train.py", "cli.py"))
    for section in re.findall(r"README: (\w[\w ]*)", code):
        assert section in headings, section
