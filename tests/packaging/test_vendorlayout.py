"""packaging/vendorlayout.py: which folder each wheel lands in, on small real wheel files."""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from devtools.zipbuild import ROOT

# packaging/ is a folder of scripts, not a package (it would shadow PyPA's `packaging`).
sys.path.append(str(ROOT / "packaging"))
from vendorlayout import (  # noqa: E402
    import_roots,
    plan,
    prefer_oldest_abi3,
    search_path,
    wheel_entries,
)
from wheelvendor import BuildError, Target, parse_wheel  # noqa: E402

T39, T311, T313 = Target(9, "x86_64"), Target(11, "x86_64"), Target(13, "x86_64")
A39 = Target(9, "aarch64")


def make_wheel(folder: Path, filename: str, files: dict) -> object:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return parse_wheel(path)


@pytest.fixture()
def wheels(tmp_path: Path) -> dict:
    return {
        "pure": make_wheel(tmp_path, "pure-1.0-py3-none-any.whl",
                           {"pure/__init__.py": "", "pure-1.0.dist-info/RECORD": ""}),
        "c39": make_wheel(tmp_path, "nat-2.0-cp39-cp39-manylinux2014_x86_64.whl",
                          {"nat/__init__.py": "", "_nat.cpython-39-x86_64-linux-gnu.so": "x"}),
        "c311": make_wheel(tmp_path, "nat-2.0-cp311-cp311-manylinux2014_x86_64.whl",
                           {"nat/__init__.py": "", "_nat.cpython-311-x86_64-linux-gnu.so": "y"}),
        "abi39": make_wheel(tmp_path, "cr-5.0-cp39-abi3-manylinux2014_x86_64.whl",
                            {"cr/__init__.py": "a"}),
        "abi311": make_wheel(tmp_path, "cr-5.0-cp311-abi3-manylinux2014_x86_64.whl",
                             {"cr/__init__.py": "b"}),
        "abi39arm": make_wheel(tmp_path, "cr-5.0-cp39-abi3-manylinux2014_aarch64.whl",
                               {"cr/__init__.py": "c"}),
    }


def folders_of(placements: list) -> dict:
    found: dict = {}
    for p in placements:
        found.setdefault(p.wheel.filename, []).append(p.folder)
    return found


def test_pure_wheel_shared_by_all_goes_to_common_once(wheels: dict) -> None:
    placed = folders_of(plan({T39: [wheels["pure"]], T311: [wheels["pure"]],
                              A39: [wheels["pure"]]}))
    assert placed == {"pure-1.0-py3-none-any.whl": ["common"]}, placed


def test_version_specific_wheels_go_to_their_target_folder(wheels: dict) -> None:
    placed = folders_of(plan({T39: [wheels["c39"]], T311: [wheels["c311"]]}))
    assert placed[wheels["c39"].filename] == ["cp39-x86_64"], placed
    assert placed[wheels["c311"].filename] == ["cp311-x86_64"], placed


def test_oldest_abi3_build_replaces_newer_ones_per_arch(wheels: dict) -> None:
    resolved = prefer_oldest_abi3({T39: [wheels["abi39"]], T311: [wheels["abi311"]],
                                   T313: [wheels["abi311"]], A39: [wheels["abi39arm"]]})
    assert resolved[T313] == [wheels["abi39"]], "cp39-abi3 serves 3.13 too"
    placed = folders_of(plan(resolved))
    assert placed == {wheels["abi39"].filename: ["abi3-x86_64"],
                      wheels["abi39arm"].filename: ["abi3-aarch64"]}, placed


def test_abi3_wheel_not_chosen_by_every_version_stays_version_specific(wheels: dict) -> None:
    placed = folders_of(plan({T39: [wheels["c39"]], T311: [wheels["abi311"]]}))
    assert placed[wheels["abi311"].filename] == ["cp311-x86_64"], placed


def test_two_versions_of_a_pure_project_are_kept_apart(tmp_path: Path) -> None:
    old = make_wheel(tmp_path, "te-4.0-py3-none-any.whl", {"te.py": "old"})
    new = make_wheel(tmp_path, "te-4.1-py3-none-any.whl", {"te.py": "new"})
    placed = folders_of(plan({T39: [old], T311: [new], T313: [new]}))
    assert placed == {old.filename: ["cp39-x86_64"],
                      new.filename: ["cp311-x86_64", "cp313-x86_64"]}, placed


def test_same_file_name_with_different_bytes_is_refused(tmp_path: Path) -> None:
    one = make_wheel(tmp_path / "a", "pure-1.0-py3-none-any.whl", {"pure.py": "1"})
    two = make_wheel(tmp_path / "b", "pure-1.0-py3-none-any.whl", {"pure.py": "2"})
    with pytest.raises(BuildError, match="two different files named"):
        plan({T39: [one], T311: [two]})


def test_search_path_is_most_specific_first() -> None:
    assert search_path(T311, {"common", "abi3-x86_64", "cp311-x86_64", "cp39-x86_64"}) == \
        ["cp311-x86_64", "abi3-x86_64", "common"]
    assert search_path(A39, {"common"}) == ["common"]


def test_wheel_entries_merge_purelib_and_drop_scripts(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "w-1.0-py3-none-any.whl", {
        "w/__init__.py": "", "w-1.0.data/purelib/extra.py": "", "w-1.0.data/scripts/tool": "",
        "w/__pycache__/x.cpython-311.pyc": "", "w-1.0.dist-info/METADATA": ""})
    placement = plan({T39: [wheel]})[0]
    names = sorted(name for name, _ in wheel_entries(placement))
    assert names == ["vendor/common/extra.py", "vendor/common/w-1.0.dist-info/METADATA",
                     "vendor/common/w/__init__.py"], names
    assert import_roots(placement) == ["extra", "w"]


def test_wheel_with_an_escaping_path_is_refused(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "evil-1.0-py3-none-any.whl", {"../../etc/evil.py": ""})
    with pytest.raises(BuildError, match="unsafe path"):
        list(wheel_entries(plan({T39: [wheel]})[0]))


def test_namespace_package_imports_its_first_regular_package(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "azure_x-1.0-py3-none-any.whl", {
        "azure/x/__init__.py": "", "azure/x/sub/__init__.py": "", "azure/x/_m.py": ""})
    assert import_roots(plan({T39: [wheel]})[0]) == ["azure.x"]
