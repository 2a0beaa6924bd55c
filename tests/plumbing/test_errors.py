"""One shape of "that failed" across the capabilities."""
from __future__ import annotations

import pytest

from capture_engine.errors import CaptureError, InvalidPortError, LocalFileError
from connectivity.errors import ConnectivityError
from handler.errors import HandlerError
from plumbing.errors import CodedError
from snapshot.errors import Code, FreezeError, SnapshotError, SnapshotSettingsError


@pytest.mark.parametrize("base", [CaptureError, ConnectivityError, SnapshotError, HandlerError])
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


def test_each_parser_reports_through_the_one_collector():
    from capture_engine.errors import CaptureSettingsError, ProblemList
    from connectivity.errors import ConnectivityRequestError
    from connectivity.shape import Problems as CheckProblems
    from plumbing.problems import Problem
    from snapshot.fields import Problems as SnapshotProblems

    capture = ProblemList()
    capture.add("filters[0].localPort", "not a port", InvalidPortError)
    assert capture.collected.found == [Problem("filters[0].localPort", "not a port", 103)]
    with pytest.raises(CaptureSettingsError) as refused:
        capture.raise_if_any()
    assert refused.value.code == 103

    check = CheckProblems()
    check.add("destination.address", "see sig=SECRETSIG", ConnectivityError)
    assert "SECRETSIG" not in check.collected.found[0].message
    with pytest.raises(ConnectivityRequestError):
        check.raise_if_any()

    snapshot = SnapshotProblems()
    snapshot.note("taskId is missing")
    with pytest.raises(SnapshotSettingsError) as refused:
        snapshot.raise_if_any()
    assert refused.value.code == Code.PARAMETER_ERROR and snapshot.found[0].path == ""
