"""scripts/check_links.py passes on this repository and fails on a tree with a broken link."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_links.py"


def run(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_every_link_in_the_repository_resolves() -> None:
    result = run(ROOT)
    assert result.returncode == 0, f"broken links:\n{result.stderr}{result.stdout}"


def write_tree(root: Path, readme: str) -> None:
    (root / "docs").mkdir()
    (root / "docs" / "page.md").write_text("# A page\n\n## Error codes (`x.py`)\n\ntext\n")
    (root / "README.md").write_text(readme)


def test_a_good_tree_passes(tmp_path: Path) -> None:
    write_tree(tmp_path, "[page](docs/page.md#error-codes-xpy) [web](https://example.org/)\n"
                         "```\n[not a link](nowhere.md)\n```\n")
    result = run(tmp_path)
    assert result.returncode == 0, f"a tree whose links resolve must pass:\n{result.stderr}"
    assert "https://example.org/" in result.stdout, "external links are listed"


def test_a_missing_file_fails(tmp_path: Path) -> None:
    write_tree(tmp_path, "see [the guide](docs/guide.md)\n")
    result = run(tmp_path)
    assert result.returncode == 1, "a link to a missing file must fail"
    assert "README.md:1: docs/guide.md: no such file" in result.stderr, result.stderr


def test_a_missing_anchor_fails(tmp_path: Path) -> None:
    write_tree(tmp_path, "see [codes](docs/page.md#status-codes)\n")
    result = run(tmp_path)
    assert result.returncode == 1, "a link to a missing heading must fail"
    assert "#status-codes" in result.stderr, result.stderr


def test_a_local_path_fails(tmp_path: Path) -> None:
    write_tree(tmp_path, "the contract is in `/work/shared/spec/agent-protocol.md`\n"
                         "and [here](../shared/spec/x.md)\n")
    result = run(tmp_path)
    assert result.returncode == 1, "a path of a build machine must fail"
    assert "README.md:1" in result.stderr and "README.md:2" in result.stderr, result.stderr
