"""The README and docs/ state facts the code owns: keep them equal, and keep every link and
reference between code and pages pointing at something that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from experiments.config import config_reference
from experiments.optimizer_listing import optimizer_markdown

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MEASUREMENTS = ROOT / "docs" / "measurements.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _prose(page: Path) -> str:
    """The page without its fenced blocks: a `# comment` in a code block is no heading."""
    return FENCE.sub("", page.read_text())


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of ``page``, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#+ (.+)$", _prose(page), re.M):
        base = slug(heading)
        found.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return found


def _generated_block(page: Path, name: str, fence: str = "") -> str:
    text = page.read_text()
    opening, closing = (f"```{fence}\n", "\n```\n") if fence else ("", "\n")
    match = re.search(rf"<!-- {name}:begin -->\n{re.escape(opening)}(.*?){re.escape(closing)}<!-- {name}:end -->",
                      text, re.S)
    assert match, f"{page.relative_to(ROOT)} lacks the {name} markers"
    return match.group(1)


def test_slug_follows_github():
    assert slug("Analysing runs: `optbench analyze`") == "analysing-runs-optbench-analyze"
    assert slug("The batch-size scaling protocol (Shallue et al. 2018)") == \
        "the-batch-size-scaling-protocol-shallue-et-al-2018"
    assert slug("Re-runs, resume and locking") == "re-runs-resume-and-locking"


def test_optimizer_table_is_generated_from_the_registry():
    """docs/optimizers.md's registry table is exactly `optimizer_markdown()` (when the registry or
    an optimizer's defaults change, paste the output of
    `python -c "from experiments.optimizer_listing import optimizer_markdown; print(optimizer_markdown())"`)."""
    assert _generated_block(ROOT / "docs" / "optimizers.md", "optimizer-table") == optimizer_markdown()


def test_config_keys_are_generated_from_the_schema():
    """docs/training.md's config-key list is exactly `config_reference()`, what `optbench train
    --help` prints (when a config field, default or comment changes, paste the output of
    `python -c "from experiments.config import config_reference; print(config_reference())"`)."""
    assert _generated_block(ROOT / "docs" / "training.md", "config-keys", fence="text") == config_reference()


def test_readme_commands_exist():
    """The README's two commands are executable scripts, and CI runs the README's test command."""
    readme = (ROOT / "README.md").read_text()
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        path = ROOT / script
        assert path.is_file() and path.stat().st_mode & 0o111, script
        assert script in readme, script
    assert 'scripts/test.sh -m "not slow"' in readme
    ci = ROOT / ".ci" / "run"
    assert ci.stat().st_mode & 0o111 and "scripts/test.sh" in ci.read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_page_stays_inside_the_repository(page):
    """No page sends its reader outside the repository: no parent-directory paths, no "the issues"."""
    text = page.read_text()
    assert "../" not in text and "the issues" not in text


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_relative_links_resolve(page):
    """Every relative link of the page names an existing file inside the repository and, with a
    `#fragment`, one of that page's headings."""
    for target in LINK.findall(_prose(page)):
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.is_file() and ROOT in linked.parents, f"{page.name}: {target}"
        if fragment:
            assert fragment in anchors(linked), f"{page.name}: {target} (no such heading)"


def test_readme_links_every_docs_page():
    """"Where to read on" reaches every page of docs/."""
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in readme, page.name


def test_code_references_name_existing_pages():
    """Every `README: <section>` and `docs/<page>.md[#anchor]` that code or scripts mention names
    a heading or page that exists."""
    readme_headings = set(re.findall(r"^#+ (.+)$", _prose(ROOT / "README.md"), re.M))
    files = [p for folder in ("experiments", "analysis", "optimizers", "scripts")
             for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".sh", ".yaml")]
    references = 0
    for file in files:
        text = file.read_text()
        for section in re.findall(r"README: (\w[\w ]*)", text):
            assert section in readme_headings, f"{file.relative_to(ROOT)}: README: {section}"
            references += 1
        for name, fragment in re.findall(r"docs/([\w-]+\.md)(?:#([\w-]+))?", text):
            page = ROOT / "docs" / name
            assert page.is_file(), f"{file.relative_to(ROOT)}: docs/{name}"
            assert not fragment or fragment in anchors(page), f"{file.relative_to(ROOT)}: docs/{name}#{fragment}"
            references += 1
    assert references, "no code references found: the patterns above no longer match anything"


def _measure_sections() -> list[str]:
    listing = subprocess.run(["bash", str(ROOT / "scripts" / "measure.sh"), "--list"],
                             capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listing.splitlines()]


def test_every_measurement_section_carries_a_commit_stamp():
    """Each section of docs/measurements.md names the commit its numbers were measured at."""
    sections = re.split(r"^## ", _prose(MEASUREMENTS), flags=re.M)[1:]
    assert sections
    for section in sections:
        assert re.search(r"at commits? `[0-9a-f]{7,40}`", section), section.splitlines()[0]


def test_measure_sh_and_the_page_hold_the_same_sections():
    """Every section `scripts/measure.sh` writes has its block in the page, and every block in
    the page is a section it can re-measure."""
    blocks = re.findall(r"<!-- measure:begin ([\w-]+) -->", MEASUREMENTS.read_text())
    assert blocks == _measure_sections()


def test_measure_sh_refuses_an_unknown_section():
    result = subprocess.run(["bash", str(ROOT / "scripts" / "measure.sh"), "benchmarks"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("measure.sh: unknown section 'benchmarks' (sections: tests test-suite ")
