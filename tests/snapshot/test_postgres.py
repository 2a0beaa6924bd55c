"""PostgreSQL workload hooks against a real server whose data lives on a frozen loop fs."""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devtools.azurite import free_port
from devtools.loopfs import LoopFilesystems
from snapshot.log import BufferedLog
from snapshot.pghooks import PostgresHooks
from snapshot.result import Consistency
from snapshot.workload import load_workload_config
from tests.snapshot.conftest import make_disks, wait_for, write_vmbackup_conf
from tests.snapshot.test_runner import do_run

pytestmark = pytest.mark.root
PASSWORD = "Pg-S3cret-77"
BINDIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _as_postgres(argv, **kw):
    return subprocess.run(argv, user="postgres", capture_output=True, text=True, timeout=120,
                          check=True, cwd="/", **kw)


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL server: data on a loop ext4, socket in a temp dir."""
    if not BINDIRS:
        pytest.fail("PostgreSQL server binaries are missing (apt-get install postgresql)")
    bindir = BINDIRS[-1]
    root = Path(tempfile.mkdtemp(prefix="snap-pg-"))
    os.chmod(root, 0o755)
    loops = LoopFilesystems(root)
    try:
        mount = loops.make("ext4", size_mb=256).mountpoint
        sock = root / "sock"
        sock.mkdir()
        shutil.chown(sock, "postgres")
        shutil.chown(mount, "postgres")
        data, port = os.path.join(mount, "data"), free_port()
        _as_postgres([f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"])
        _as_postgres([f"{bindir}/pg_ctl", "-D", data, "-l", str(sock / "log"), "-w", "-o",
                      f"-k {sock} -p {port} -c listen_addresses=''", "start"])
        yield {"bindir": bindir, "sock": str(sock), "port": port, "mount": mount,
               "data": data}
        for mode in ("fast", "immediate"):  # a server that will not stop fast is stopped hard
            stopped = subprocess.run([f"{bindir}/pg_ctl", "-D", data, "-m", mode, "-t", "30",
                                      "-w", "stop"], user="postgres", capture_output=True,
                                     timeout=120, check=False, cwd="/")
            if stopped.returncode == 0:
                break
    finally:
        loops.close()
        shutil.rmtree(root, ignore_errors=True)


def sql(pg, statement: str) -> str:
    return _as_postgres([f"{pg['bindir']}/psql", "-X", "-A", "-t", "-h", pg["sock"], "-p",
                         str(pg["port"]), "-U", "postgres", "-c", statement]).stdout.strip()


def workload_conf(confdir, pg, port=None, user="postgres", timeout=20, command_path=None):
    (confdir / "workload.conf").write_text(
        "[workload]\nworkload_name = postgres\n"
        f"command_path = {command_path or pg['bindir']}\nlinux_user = postgres\n"
        f"timeout = {timeout}\n"
        f"credString = host={pg['sock']} port={port or pg['port']} user={user} "
        f"password = {PASSWORD} dbname=postgres\n")


def no_session_left(pg) -> bool:
    return wait_for(lambda: sql(pg, "SELECT count(*) FROM pg_stat_activity "
                                    "WHERE application_name = 'vmsnapshot'") == "0", timeout=30)


def test_postgres_quiesced_around_the_freeze(postgres, azurite, confdir):
    write_vmbackup_conf(confdir, [postgres["mount"]])
    workload_conf(confdir, postgres)
    sql(postgres, "CREATE TABLE IF NOT EXISTS t (v int); INSERT INTO t VALUES (1);")
    result, log = do_run(confdir, make_disks(azurite, 2))
    text = log.text()
    assert result.ok and result.consistency is Consistency.APPLICATION, result.message
    order = [text.find(w) for w in ("postgres quiesced", "froze", "thawed", "postgres resumed")]
    assert -1 not in order and order == sorted(order), f"quiesce, freeze, thaw, resume: {text}"
    assert "LABEL: vmsnapshot" in text, "pg_backup_stop returned our backup label"
    document = json.dumps(result.status_blob_document(datetime.now(timezone.utc)))
    assert PASSWORD not in text + document, "the credential leaked into the log or status"
    assert sql(postgres, "SELECT count(*) FROM pg_stat_activity "
                         "WHERE application_name = 'vmsnapshot'") == "0", "session left open"
    sql(postgres, "INSERT INTO t VALUES (2);")  # the server accepts writes again


def test_postgres_resumed_after_a_failed_snapshot(postgres, azurite, confdir):
    write_vmbackup_conf(confdir, [postgres["mount"]])
    workload_conf(confdir, postgres)
    uri = make_disks(azurite, 1)[0]
    parts = urlsplit(uri).path.split("/")
    result, log = do_run(confdir, [azurite.blob_sas_uri(parts[-2], parts[-1], permission="r")])
    assert not result.ok, "a read-only SAS cannot be snapshotted"
    assert "postgres resumed" in log.text(), "resume must run after a failed snapshot"
    assert sql(postgres, "SELECT count(*) FROM pg_stat_activity "
                         "WHERE application_name = 'vmsnapshot'") == "0", "session left open"


def test_unreachable_postgres_fails_before_freezing(postgres, azurite, confdir):
    write_vmbackup_conf(confdir, [postgres["mount"]])
    workload_conf(confdir, postgres, port=free_port())
    result, log = do_run(confdir, make_disks(azurite, 1))
    assert result.code == 506 and not result.ok, result.message  # workload connection error
    assert result.freeze_window is None, "nothing may be frozen when the quiesce failed"
    assert PASSWORD not in log.text() + result.message, "the credential leaked"


@pytest.mark.parametrize(("case", "code"), [("unknown-role", 505), ("no-privilege", 509),
                                            ("no-psql", 500)])
def test_quiesce_failures_have_their_codes(case, code, postgres, azurite, confdir):
    write_vmbackup_conf(confdir, [postgres["mount"]])
    if case == "no-privilege":
        sql(postgres, "DROP ROLE IF EXISTS nobackup; CREATE ROLE nobackup LOGIN;")
    workload_conf(confdir, postgres, user={"unknown-role": "nosuchrole",
                                           "no-privilege": "nobackup"}.get(case, "postgres"),
                  command_path="/nonexistent/bin" if case == "no-psql" else None)
    result, log = do_run(confdir, make_disks(azurite, 1))
    assert (result.status, result.code) == ("error", code), result.message
    assert result.freeze_window is None, "nothing may be frozen when the quiesce failed"
    assert PASSWORD not in log.text() + result.message, "the credential leaked"
    assert no_session_left(postgres), "the session ended"


def test_quiesce_that_never_answers_is_510(postgres, azurite, confdir):
    """A checkpoint that cannot finish (the checkpointer is stopped) holds pg_backup_start."""
    write_vmbackup_conf(confdir, [postgres["mount"]])
    workload_conf(confdir, postgres, timeout=2)
    pid = int(sql(postgres, "SELECT pid FROM pg_stat_activity "
                            "WHERE backend_type = 'checkpointer'"))
    os.kill(pid, signal.SIGSTOP)
    try:
        result, _log = do_run(confdir, make_disks(azurite, 1))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert (result.status, result.code) == ("error", 510), result.message
    assert result.freeze_window is None, "nothing may be frozen when the quiesce timed out"
    assert no_session_left(postgres), "the backend ends once its client is gone"


def test_resume_failure_is_504(postgres, confdir):
    """The session holding the backup is terminated between quiesce and resume."""
    workload_conf(confdir, postgres)
    hooks = PostgresHooks(load_workload_config(str(confdir / "workload.conf"),
                                               BufferedLog().redactor), BufferedLog())
    assert hooks.pre().ok, "quiesced"
    sql(postgres, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE application_name = 'vmsnapshot'")
    post = hooks.post()
    assert (post.ok, post.code) == (False, 504), post.message
    assert no_session_left(postgres), "nothing left behind"
