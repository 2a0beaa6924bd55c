"""`bin/launcher.sh --selfcheck`: import every vendored dependency and exercise the native ones."""
from __future__ import annotations

import importlib
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

EXIT_FAILED = 1


def _probe_cryptography() -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = Ed25519PrivateKey.generate()
    key.public_key().verify(key.sign(b"selfcheck"), b"selfcheck")
    aes = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce = os.urandom(12)
    if aes.decrypt(nonce, aes.encrypt(nonce, b"selfcheck", None), None) != b"selfcheck":
        raise RuntimeError("AES-GCM round trip returned different bytes")
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"abc")
    if not digest.finalize().hex().startswith("ba7816bf"):
        raise RuntimeError("SHA-256('abc') is wrong")
    return "Ed25519 sign/verify, AES-256-GCM round trip, SHA-256 ok"


def _probe_psutil() -> str:
    import psutil

    rss = psutil.Process().memory_info().rss
    if rss <= 0:
        raise RuntimeError(f"psutil reports rss={rss}")
    return f"own rss {rss // 1024} KiB, {psutil.cpu_count()} CPUs"


PROBES: dict[str, Callable[[], str]] = {
    "cryptography": _probe_cryptography,
    "psutil": _probe_psutil,
}


def _module_dirs(module: object) -> list[str]:
    paths = list(getattr(module, "__path__", []) or [])
    origin = getattr(module, "__file__", None)
    return [str(Path(p).resolve()) for p in (paths or [origin]) if p]


def check_wheel(entry: dict, folder: Path) -> list[str]:
    """Import every root module of one wheel; each must come from its vendor folder."""
    problems = []
    for name in entry["imports"]:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the finding
            problems.append(f"{entry['project']}: import {name} failed: {exc!r}")
            continue
        dirs = _module_dirs(module)
        if not any(d.startswith(str(folder)) for d in dirs):
            problems.append(f"{entry['project']}: {name} was imported from {dirs}, "
                            f"not from {folder}")
    probe = PROBES.get(entry["project"])
    if probe is not None and not problems:
        try:
            print(f"  {entry['project']}: {probe()}")
        except Exception as exc:  # noqa: BLE001 - a native module that does not work
            problems.append(f"{entry['project']}: probe failed: {exc!r}")
    return problems


def active_folders(ext_dir: Path) -> Sequence[str]:
    vendor = ext_dir / "vendor"
    entries = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    return [Path(e).name for e in entries if e and Path(e).resolve().parent == vendor]


def main(argv: Sequence[str]) -> int:
    ext_dir = Path(argv[1] if len(argv) > 1 else Path(__file__).parent.parent).resolve()
    manifest = json.loads((ext_dir / "vendor" / "MANIFEST.json").read_text())
    folders = active_folders(ext_dir)
    print(f"python {platform.python_version()} ({sys.executable}), arch {platform.machine()}, "
          f"vendor folders: {' '.join(folders) or '(none)'}")
    problems: list[str] = []
    checked = 0
    for entry in manifest["wheels"]:
        if entry["folder"] not in folders:
            continue
        checked += 1
        problems += check_wheel(entry, ext_dir / "vendor" / entry["folder"])
        if entry["direct"]:
            print(f"{entry['project']} {entry['version']} ({entry['folder']})")
    if checked == 0:
        problems.append("no vendored wheel applies to this interpreter")
    for problem in problems:
        print(f"selfcheck: FAILED: {problem}", file=sys.stderr)
    if problems:
        return EXIT_FAILED
    print(f"selfcheck: ok ({checked} vendored distributions imported)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
