"""The README's option table and the CLI parser agree, and the README's commands are the ones
CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

from gkd_search.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def parser_flags() -> set[str]:
    return {flag for action in build_parser()._actions for flag in action.option_strings}


def test_every_option_in_the_readme_table_exists():
    documented = set()
    for line in README.splitlines():
        if line.startswith("| `--"):
            documented |= set(re.findall(r"`(--[a-z-]+)", line.split("|")[1]))
    assert documented, "the README lost its option table"
    assert documented <= parser_flags(), documented - parser_flags()


def test_every_search_option_is_documented():
    undocumented = {f for f in parser_flags() if f.startswith("--")} - {"--help"}
    missing = {f for f in undocumented if f"`{f}" not in README}
    assert not missing, f"options missing from README.md: {sorted(missing)}"


def test_readme_opens_with_the_run_and_test_commands():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    assert blocks[0].endswith("gkd-search --budget-ms 10")
    assert "pip install torch==2.13.0" in blocks[0] and "pip install torch==2.13.0" in blocks[1]
    assert blocks[1].endswith("python -m pytest -q")
    assert README.index("<!-- test-command -->") < README.index(blocks[1])
    assert "<!-- test-command -->" in (ROOT / ".ci" / "run").read_text()
