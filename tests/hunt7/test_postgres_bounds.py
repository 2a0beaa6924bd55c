"""Hunt: the postgres quiesce ends within its timeout on the real clock, whatever psql does."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from snapshot.errors import Code
from snapshot.log import BufferedLog
from snapshot.pghooks import PostgresHooks
from snapshot.scripts import PhaseResult
from snapshot.workload import WorkloadConfig
from tests.snapshot.conftest import write_script

TIMEOUT = 3.0
CLOSE_GRACE = 5.0  # what a failed quiesce gives psql to end after its input closes (_close)
# A psql (a wrapper named by command_path) that answers the version query, then closes its
# output and never exits (its end: 20 s, so a failing test ends too).
CLOSES_OUTPUT = r"""read query; read echo; echo 160000; echo "${echo#\\echo }"
exec 1>&-; exec sleep 20"""


def test_a_psql_that_closes_its_output_and_lingers_ends_within_the_timeout(
        tmp_path: Path) -> None:
    psql = write_script(tmp_path / "psql", CLOSES_OUTPUT)
    hooks = PostgresHooks(WorkloadConfig("postgres", command_path=str(psql), timeout=TIMEOUT),
                          BufferedLog())
    outcome: list[PhaseResult] = []
    began = time.monotonic()
    worker = threading.Thread(target=lambda: outcome.append(hooks.pre()), daemon=True)
    worker.start()
    worker.join(TIMEOUT + CLOSE_GRACE + 4)
    took = time.monotonic() - began
    try:
        assert outcome, f"the quiesce still waits {took:.0f} s later (timeout {TIMEOUT:g} s, " \
                        f"then {CLOSE_GRACE:g} s to close): psql.wait() without a bound"
        result = outcome[0]
        assert (result.ok, result.code) == (False, Code.WORKLOAD_QUIESCE_ERROR), result
        assert "closed its output" in result.message, result
    finally:
        worker.join(30)
        hooks.post()
