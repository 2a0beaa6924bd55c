"""Check every link in the tracked Markdown files: relative targets and anchors must exist."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

# [text](target) and [text](target "title"); images too. Reference definitions: [id]: target
INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# Text that names a path of some machine rather than of this repository.
LOCAL_PATH = re.compile(r"(?<![\w.])(/work/|(?:\.\./)+shared/|file:/)")


def tracked_markdown(root: Path) -> List[Path]:
    """The *.md files git tracks under root (every *.md when root is not a git tree)."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", "*.md"],
                            capture_output=True, timeout=60, check=False)
    if listed.returncode == 0:
        return [root / name for name in listed.stdout.decode().split("\0") if name]
    return sorted(root.rglob("*.md"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`|\*\*|__", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    seen: Dict[str, int] = {}
    found: Set[str] = set()
    for line in _outside_fences(path.read_text(encoding="utf-8")):
        match = HEADING.match(line[1])
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def _outside_fences(text: str) -> Iterator[Tuple[int, str]]:
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def links(path: Path) -> Iterator[Tuple[int, str]]:
    for number, line in _outside_fences(path.read_text(encoding="utf-8")):
        for match in INLINE.finditer(line):
            yield number, match.group(1)
        reference = REFERENCE.match(line)
        if reference:
            yield number, reference.group(1)


def check(root: Path) -> Tuple[List[str], List[str]]:
    """(problems, external links) over every tracked Markdown file under root."""
    root = root.resolve()
    problems: List[str] = []
    external: List[str] = []
    for path in tracked_markdown(root):
        where = path.relative_to(root)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if LOCAL_PATH.search(line):
                problems.append(f"{where}:{number}: names a path outside the repository: "
                                f"{line.strip()[:100]}")
        for number, target in links(path):
            if re.match(r"https?://", target):
                external.append(f"{where}:{number}: {target}")
                continue
            problem = _check_target(root, path, target)
            if problem:
                problems.append(f"{where}:{number}: {target}: {problem}")
    return problems, external


def _check_target(root: Path, source: Path, target: str) -> str:
    if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
        return "only relative links and http(s) links are allowed"
    if target.startswith("/"):
        return "an absolute path: link relative to the file instead"
    file_part, _, anchor = target.partition("#")
    destination = (source.parent / file_part).resolve() if file_part else source
    if not destination.is_relative_to(root):
        return "points outside the repository"
    if not destination.exists():
        return "no such file"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"no heading with anchor #{anchor} in {destination.relative_to(root)}"
    return ""


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    args = parser.parse_args(argv)
    problems, external = check(Path(args.root))
    for line in external:
        print(f"external: {line}")
    for line in problems:
        print(f"BROKEN: {line}", file=sys.stderr)
    print(f"check_links: {len(problems)} problem(s), {len(external)} external link(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
