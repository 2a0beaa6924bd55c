"""One shape of "that failed" across the capabilities."""
from __future__ import annotations

import pytest

from capture_engine.errors import CaptureError, InvalidPortError, LocalFileError
from connectivity.errors import ConnectivityError
from plumbing.errors import CodedError
from snapshot.errors import Code, FreezeError, SnapshotError, SnapshotSettingsError


@pytest.mark.parametrize("base", [CaptureError, ConnectivityError, SnapshotError])
def test_every_capability_error_is_a_coded_error_with_a_title(base):
    error = base("it failed")
    assert isinstance(error, CodedError) and error.message == str(error) == "it failed"
    assert isinstance(error.code, int) and error.title and error.detail == {}


def test_the_class_code_is_the_default_and_an_instance_may_name_its_own():
    assert InvalidPortError("bad port").code == 103
    assert FreezeError("x").code == Code.FREEZE_FAILED
    assert FreezeError("x", Code.FREEZE_TIMEOUT).code == Code.FREEZE_TIMEOUT
    assert SnapshotSettingsError(["a", "b"], Code.BAD_LUN_LIST).code == Code.BAD_LUN_LIST
    assert LocalFileError("full", disk_full=True).message == "full"
