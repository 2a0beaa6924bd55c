"""The pre/post script and workload quiesce timeouts are read from the injected clock."""
from __future__ import annotations

import threading

from plumbing.clock import ManualClock
from snapshot.errors import Code
from snapshot.log import BufferedLog
from snapshot.pghooks import PostgresHooks
from snapshot.scripts import PhaseResult, PluginConfig, run_phase
from snapshot.workload import WorkloadConfig
from tests.snapshot.conftest import write_script


def test_retries_stop_once_the_clock_passes_the_script_timeout(tmp_path):
    """Every read of the clock finds 20 s gone: the first attempt starts with 10 s of the
    30 s left, the second would start after it, so it never runs (10 were allowed)."""
    script = write_script(tmp_path / "pre.sh", "exit 3")
    config = PluginConfig(pre_scripts=(str(script),), pre_retries=10, timeout=30)
    result = run_phase(config, "pre", BufferedLog(), clock=ManualClock(tick=20.0))
    assert (result.ok, result.runs) == (False, 1), result
    assert result.code == Code.PRE_SCRIPT_FAILED and "exited with 3" in result.message, result


def test_a_phase_within_its_timeout_runs_every_allowed_attempt(tmp_path):
    script = write_script(tmp_path / "post.sh", "exit 3")
    config = PluginConfig(post_scripts=(str(script),), post_retries=2, timeout=30)
    result = run_phase(config, "post", BufferedLog(), clock=ManualClock())
    assert (result.ok, result.runs, result.code) == (False, 3, Code.POST_SCRIPT_FAILED), result


# A psql that answers the version query, then never answers again (a server stuck in a
# checkpoint): the quiesce must end at the workload's timeout, read from the clock. It keeps
# its stdout open (no EOF) and ends by itself after 90 s, so a failing test ends too.
STUCK_PSQL = r"""read query; read echo; echo 160000; echo "${echo#\\echo }"
exec timeout 90 sh -c 'while read line; do :; done'"""


def test_quiesce_that_never_answers_ends_when_the_clock_passes_the_timeout(tmp_path):
    """Every read of the clock finds 100 s gone; the 1,000 s timeout is spent in a few
    seconds of real time (the wait is sliced so the clock is read again)."""
    psql = write_script(tmp_path / "psql", STUCK_PSQL)
    hooks = PostgresHooks(WorkloadConfig("postgres", command_path=str(psql), timeout=1000),
                          BufferedLog(), ManualClock(tick=100.0))
    outcome: list[PhaseResult] = []
    worker = threading.Thread(target=lambda: outcome.append(hooks.pre()), daemon=True)
    worker.start()
    worker.join(60)
    try:
        assert outcome, "the quiesce still waits after 60 s: the timeout is not on the clock"
        assert (outcome[0].ok, outcome[0].code) == (False, Code.WORKLOAD_QUIESCE_TIMEOUT), \
            outcome[0]
    finally:
        worker.join(90)  # only when it failed: the stuck psql ends itself by then
        hooks.post()  # ends the psql session
