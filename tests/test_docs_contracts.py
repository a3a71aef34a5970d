"""docs/contracts.md: its runnable examples run as written (signature listings are not examples)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs/contracts.md"


def runnable() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return [b for b in blocks if b.startswith(("from ", "import "))]


def test_the_value_contract_example_runs_as_written() -> None:
    examples = runnable()
    assert examples, "contracts.md should hold a runnable example of the value contract"
    for code in examples:
        exec(compile(code, str(DOC), "exec"), {})


def test_the_documented_types_are_what_naturalize_gives() -> None:
    from datasources.naturalize import naturalize

    got = naturalize({"00080061": {"vr": "CS", "Value": ["CT", "SR"]}, "00080060": {"vr": "CS", "Value": ["CT"]}})
    assert got == {"ModalitiesInStudy": ["CT", "SR"], "Modality": "CT"}
