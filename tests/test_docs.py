"""The code tables in docs/ list exactly the codes each package's errors.py defines."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- codes: {} -->"


def exception_codes(module: ModuleType) -> Set[int]:
    """Every int `code` of an exception class defined in the module."""
    return {cls.code for cls in vars(module).values()
            if inspect.isclass(cls) and issubclass(cls, BaseException)
            and cls.__module__ == module.__name__ and isinstance(cls.__dict__.get("code"), int)}


def _handler_codes() -> Set[int]:
    """handler/errors.py: the handler's one table (no other module declares a code)."""
    return exception_codes(importlib.import_module("handler.errors"))


def test_no_handler_module_but_errors_py_declares_a_code() -> None:
    import handler
    from handler.errors import HandlerError

    elsewhere = []
    for info in pkgutil.walk_packages(handler.__path__, "handler."):
        if info.name.endswith("__main__") or info.name == "handler.errors":
            continue
        module = importlib.import_module(info.name)
        elsewhere += [f"{info.name}.{cls.__name__}" for cls in vars(module).values()
                      if inspect.isclass(cls) and issubclass(cls, HandlerError)
                      and cls.__module__ == module.__name__ and "code" in cls.__dict__]
    assert not elsewhere, f"codes declared outside handler/errors.py: {elsewhere}"


def _connectivity_codes() -> Set[int]:
    errors = importlib.import_module("connectivity.errors")
    # A check that ran reports a result code that is no exception: Reachable, Degraded...
    return exception_codes(errors) | {errors.REACHABLE, errors.DEGRADED, errors.UNREACHABLE}


def _snapshot_codes() -> Set[int]:
    errors = importlib.import_module("snapshot.errors")
    return exception_codes(errors) | set(errors.all_codes().values())


def _capture_codes() -> Set[int]:
    return exception_codes(importlib.import_module("capture_engine.errors"))


PAGES: Dict[str, Tuple[str, Callable[[], Set[int]]]] = {
    "capture_engine": ("docs/packet-capture.md", _capture_codes),
    "connectivity": ("docs/connectivity-check.md", _connectivity_codes),
    "snapshot": ("docs/vmsnapshot.md", _snapshot_codes),
    "handler": ("docs/agent-protocol.md", _handler_codes),
}


def documented_codes(text: str, name: str) -> Set[int]:
    """The numbers in the first column of the table that follows `<!-- codes: name -->`."""
    marker = MARKER.format(name)
    assert text.count(marker) == 1, f"expected exactly one {marker!r} before the code table"
    lines = text.split(marker, 1)[1].lstrip("\n").splitlines()
    assert lines and lines[0].startswith("|"), f"a table must follow {marker!r}"
    codes: Set[int] = set()
    for line in lines[2:]:  # after the header and its |---| line
        if not line.startswith("|"):
            break
        first_cell = line.split("|")[1]
        codes |= {int(number) for number in re.findall(r"\d+", first_cell)}
    return codes


def mismatch(defined: Set[int], documented: Set[int]) -> str:
    problems = []
    if defined - documented:
        problems.append(f"codes without a docs row: {sorted(defined - documented)}")
    if documented - defined:
        problems.append(f"docs rows for codes the code does not define: "
                        f"{sorted(documented - defined)}")
    return "; ".join(problems)


@pytest.mark.parametrize("name", sorted(PAGES))
def test_code_table_lists_exactly_the_codes_defined(name: str) -> None:
    page, defined = PAGES[name]
    documented = documented_codes((ROOT / page).read_text(encoding="utf-8"), name)
    assert documented, f"{page}: the code table of {name} is empty"
    problem = mismatch(defined(), documented)
    assert not problem, f"{page} vs {name}: {problem}"


def test_a_code_added_without_a_row_is_caught() -> None:
    """The comparison above can fail: one code more in errors.py than in the table."""
    page, defined = PAGES["capture_engine"]
    documented = documented_codes((ROOT / page).read_text(encoding="utf-8"), "capture_engine")

    class NewError(Exception):
        code = 199

    module = ModuleType("fake_errors")
    NewError.__module__ = module.__name__
    module.NewError = NewError  # type: ignore[attr-defined]
    assert exception_codes(module) == {199}, "the collector must see a new class's code"
    assert "199" in mismatch(defined() | exception_codes(module), documented), \
        "a code with no row must be reported"


def test_rows_are_read_from_the_first_column_only() -> None:
    text = ("x\n<!-- codes: demo -->\n| code | meaning |\n|---|---|\n| 1 / 2 | see 404 |\n"
            "| 76 | |\n\n| 9 | after the table |\n")
    assert documented_codes(text, "demo") == {1, 2, 76}, "only the first cells of one table"


def test_ci_runs_the_readme_test_command() -> None:
    """README's command 2 is what `.ci/run` runs, word for word (the promise to a newcomer)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"# 2\. Run the tests[^\n]*\n([^\n]+)\n", readme)
    assert block, "README.md lost its '# 2. Run the tests' command"
    command = block.group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines, f".ci/run does not run the README's test command {command!r}"
