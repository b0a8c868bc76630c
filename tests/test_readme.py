"""The README's two commands stay exactly what CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bash_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_second() -> None:
    main, tests = _bash_blocks()[:2]
    assert "\n" not in main and "\n" not in tests
    assert main.startswith('pip install "torch==2.13.0" -e ".[cpu,llm]"')
    assert main.endswith("hardneg experiment --profile quick")
    assert tests.startswith('pip install "torch==2.13.0"') and "pytest" in tests
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines


def test_every_extra_named_in_the_commands_exists() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    for block in _bash_blocks()[:2]:
        for extras in re.findall(r'-e "\.\[([a-z,]+)\]"', block):
            for extra in extras.split(","):
                assert re.search(rf"^{extra} = \[", pyproject, flags=re.M), extra
