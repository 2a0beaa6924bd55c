"""Hunt2: a watchdog that lingers for a late FIFREEZE thaws whatever is frozen when it *reads*
`frozen I`, not what that FIFREEZE froze. The worker tells `frozen 0`, thaws its late freeze
itself and tells `thawed 0`; if the watchdog reads those lines late (a loaded VM; SIGSTOP here
makes the delay deterministic), the filesystem may meanwhile be frozen by someone else - the
next backup, an admin - and the watchdog's FITHAW for `frozen 0` thaws that freeze."""
from __future__ import annotations

import signal

import pytest

from devtools.blkthrottle import freeze, thaw_if_frozen, unwritable
from snapshot.errors import FreezeError
from snapshot.freeze import Freezer
from snapshot.log import BufferedLog
from tests.snapshot.conftest import wait_for
from tests.snapshot.test_freeze_faults import hang_a_freeze, watchdog_of_this_process

pytestmark = pytest.mark.root


def test_a_late_frozen_line_never_thaws_a_later_freeze(loopfs, throttle, tmp_path):
    _, hung, limit = hang_a_freeze(loopfs, throttle, "ext4")
    dog = None
    try:
        freezer = Freezer([hung], timeout=2.0, log=BufferedLog(),
                          report_path=str(tmp_path / "dog.json"))
        with pytest.raises(FreezeError) as failed:
            with freezer:
                pass
        assert failed.value.code == 122, failed.value.message  # timed out, FIFREEZE in flight
        dog = watchdog_of_this_process()  # lingering for the FIFREEZE in flight
        dog.send_signal(signal.SIGSTOP)  # slow to be scheduled
        limit.lift()  # the late FIFREEZE returns: `frozen 0`, our own FITHAW, `thawed 0`
        assert wait_for(lambda: not freezer.in_flight, timeout=30), "the late FIFREEZE returns"
        assert wait_for(lambda: unwritable([hung], 0.5) == [], timeout=30), \
            "the worker thaws its late freeze itself"
        freeze(hung)  # the next backup's (or an admin's) freeze
        dog.send_signal(signal.SIGCONT)
        dog.wait(10)
        assert thaw_if_frozen(hung), \
            "the old watchdog thawed a freeze made after its own late one had been thawed"
    finally:
        if dog is not None and dog.is_running():
            dog.send_signal(signal.SIGCONT)
        limit.lift()
        thaw_if_frozen(hung)
