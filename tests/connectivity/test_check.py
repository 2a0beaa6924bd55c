"""End-to-end checks in real namespaces: the answer must match the topology we built."""
from __future__ import annotations

import json

import pytest

from connectivity import errors as E
from devtools.pathlab import (
    CLIENT,
    CLIENT6,
    CLOSED_PORT,
    HTTP_PORT,
    PYTHON,
    ROOT,
    ROUTER_IN,
    SERVER,
    SILENT_DNS,
    wait_tcp,
)

pytestmark = pytest.mark.root


def issues_of(answer: dict, kind: str) -> list[dict]:
    return [i for i in answer["issues"] if i["type"] == kind]


def ctx(issue: dict) -> dict:
    return {k: v for pair in issue["context"] for k, v in pair.items()}


def errors_in(answer: dict) -> list[str]:
    return [i["type"] for i in answer["issues"] if i["severity"] == "Error"]


def test_reachable_through_router_reports_hops_and_exact_counts(net):
    code, answer = net.check(SERVER, "--port", str(HTTP_PORT), "--probes", "7")
    assert code == 0, f"exit code {code} for a reachable server: {answer['issues']}"
    assert answer["connectionStatus"] == "Reachable", answer
    assert (answer["probesSent"], answer["probesFailed"]) == (7, 0), answer
    hops = answer["hops"]
    assert [h["address"] for h in hops] == [CLIENT, ROUTER_IN, SERVER], hops
    assert [h["type"] for h in hops] == ["Source", "VirtualAppliance", "Destination"], hops
    for before, after in zip(hops, hops[1:]):
        assert before["nextHopIds"] == [after["id"]], "hops must chain forward"
        assert after["previousHopIds"] == [before["id"]], "hops must chain backward"
        assert before["links"][0]["nextHopId"] == after["id"]
    assert all(isinstance(answer[k], int) for k in ("avgLatencyInMs", "minLatencyInMs",
                                                    "maxLatencyInMs")), answer
    assert errors_in(answer) == [], answer["issues"]


def test_fixed_source_port_keeps_probing(net):
    code, answer = net.check(SERVER, "--port", str(HTTP_PORT), "--source-port", "40124",
                             "--probes", "5")
    assert (answer["connectionStatus"], answer["probesFailed"]) == ("Reachable", 0), answer
    assert len(answer["hops"]) == 3, "hop discovery must work with the fixed source port"


def test_nft_drop_on_output_is_quoted_as_guest_firewall(net):
    net.nft("inet", "output", f"ip daddr {SERVER} tcp dport {HTTP_PORT} counter drop")
    code, answer = net.check(SERVER, "--port", str(HTTP_PORT), "--probes", "3")
    assert answer["connectionStatus"] == "Unreachable", answer
    assert (answer["probesSent"], answer["probesFailed"]) == (3, 3), answer
    assert code == E.UNREACHABLE
    found = issues_of(answer, "GuestFirewall")
    assert found, f"expected a GuestFirewall issue, got {answer['issues']}"
    evidence = ctx(found[0])
    assert f"ip daddr {SERVER} tcp dport {HTTP_PORT}" in evidence["rule"], evidence
    assert evidence["verdict"] == "drop" and evidence["hook"] == "output", evidence
    assert "table inet ccfw chain cc_output" in evidence["location"], evidence
    assert int(evidence["counterDelta"]) >= 3, "the rule's counter must have risen per probe"
    assert "NoListenerOnDestination" not in errors_in(answer)


@pytest.mark.parametrize("verdict", ["reject", "reject with tcp reset"])
def test_local_reject_is_told_apart_from_a_closed_port(net, verdict):
    net.nft("ip", "output", f"tcp dport {HTTP_PORT} {verdict}")
    _, rejected = net.check(SERVER, "--port", str(HTTP_PORT), "--probes", "2")
    net.client.run(["nft", "flush", "ruleset"], timeout=10)
    _, closed = net.check(SERVER, "--port", str(CLOSED_PORT), "--probes", "2")
    assert errors_in(rejected) == ["GuestFirewall"], rejected["issues"]
    assert ctx(issues_of(rejected, "GuestFirewall")[0])["verdict"].startswith("reject")
    assert errors_in(closed) == ["NoListenerOnDestination"], closed["issues"]
    assert "RST from the destination" in ctx(issues_of(closed, "NoListenerOnDestination")[0])[
        "evidence"], "the closed port's RST must be seen coming from the server"


def test_iptables_nft_rule_is_quoted_in_both_syntaxes(net):
    net.client.run(["iptables", "-A", "OUTPUT", "-p", "tcp", "-d", SERVER, "--dport",
                    str(HTTP_PORT), "-m", "comment", "--comment", "cc block", "-j", "DROP"],
                   timeout=10)
    _, answer = net.check(SERVER, "--port", str(HTTP_PORT), "--probes", "2")
    evidence = ctx(issues_of(answer, "GuestFirewall")[0])
    assert evidence["location"].startswith("table ip filter chain OUTPUT"), evidence
    assert f"-d {SERVER}/32" in evidence["iptablesRule"], evidence
    assert "--dport 80" in evidence["iptablesRule"] and "-j DROP" in evidence["iptablesRule"]


def test_reply_dropped_on_input_is_an_inbound_guest_firewall_issue(net):
    net.nft("inet", "input", f"ip saddr {SERVER} tcp sport {HTTP_PORT} drop")
    _, answer = net.check(SERVER, "--port", str(HTTP_PORT), "--probes", "2")
    found = issues_of(answer, "GuestFirewall")
    assert found and found[0]["origin"] == "Inbound", answer["issues"]
    assert ctx(found[0])["hook"] == "input"


def test_chain_policy_drop_and_jumps_are_followed(net):
    ruleset = ("table inet ccfw {\n chain cc_sub {\n  ip daddr 10.199.2.0/24 tcp dport { 81, 82 } "
               "reject\n }\n chain cc_output {\n  type filter hook output priority 0; "
               "policy drop;\n  tcp dport 22 accept\n  tcp dport 81-90 jump cc_sub\n }\n}\n")
    net.client.run(["nft", "-f", "-"], timeout=10, input_bytes=ruleset.encode())
    _, dropped = net.check(SERVER, "--port", str(HTTP_PORT), "--probes", "1")
    _, rejected = net.check(SERVER, "--port", str(CLOSED_PORT), "--probes", "1")
    policy = ctx(issues_of(dropped, "GuestFirewall")[0])
    assert policy["verdict"] == "policy drop" and "policy drop" in policy["rule"], policy
    sub = ctx(issues_of(rejected, "GuestFirewall")[0])
    assert "chain cc_sub" in sub["location"] and sub["verdict"].startswith("reject"), sub
    assert "tcp dport { 81, 82 } reject" in sub["rule"], sub


def test_missing_route_is_route_missing(net):
    net.client.ip("route", "del", "default")
    try:
        _, answer = net.check(SERVER, "--port", str(HTTP_PORT), "--probes", "2")
    finally:
        net.client.ip("route", "add", "default", "via", ROUTER_IN)
    found = issues_of(answer, "RouteMissing")
    assert found, f"expected RouteMissing, got {answer['issues']}"
    assert "lookup main" in ctx(found[0])["tablesConsulted"], ctx(found[0])
    assert (answer["connectionStatus"], answer["probesFailed"]) == ("Unreachable", 2)


def test_nxdomain_names_the_server_and_answer(net):
    code, answer = net.check("missing.cc.test", "--port", "80")
    assert code == E.DestinationUnresolvable.code, answer
    evidence = ctx(issues_of(answer, "DnsResolution")[0])
    assert evidence["failure"] == "NXDOMAIN", evidence
    assert evidence["server1"].startswith(f"{SERVER} A -> NXDOMAIN"), evidence


def test_dns_timeout_is_reported_per_server(net):
    net.resolv(SILENT_DNS)
    code, answer = net.check("web.cc.test", "--port", "80")
    assert code == E.DestinationUnresolvable.code, answer
    evidence = ctx(issues_of(answer, "DnsResolution")[0])
    assert evidence["failure"] == "Timeout", evidence
    assert evidence["server1"].startswith(f"{SILENT_DNS} A -> Timeout"), evidence


def test_name_resolved_by_dnsmasq_is_reachable(net):
    code, answer = net.check("web.cc.test", "--port", "80", "--probes", "2")
    assert (code, answer["connectionStatus"]) == (0, "Reachable"), answer
    assert answer["hops"][-1]["address"] == SERVER


def test_source_port_in_use_is_socket_bind(net):
    holder = net.client.popen([PYTHON, "-c", "import socket,time; s=socket.socket(); "
                               "s.bind(('0.0.0.0', 40123)); s.listen(); time.sleep(60)"])
    try:
        net.client.run([PYTHON, "-c", "import socket,time\nfor _ in range(100):\n try:\n"
                        "  socket.create_connection(('127.0.0.1',40123),0.2).close();break\n"
                        " except OSError: time.sleep(0.05)"], timeout=15)
        _, answer = net.check(SERVER, "--port", "80", "--source-port", "40123", "--probes", "2")
    finally:
        holder.kill()
        holder.wait()
    evidence = ctx(issues_of(answer, "SocketBind")[0])
    assert (evidence["reason"], evidence["errno"]) == ("SourcePortInUse", "EADDRINUSE"), evidence
    assert answer["connectionStatus"] == "Unreachable"


def test_http_500_fails_status_validation_without_leaking_the_query(net):
    _, answer = net.check(f"http://{SERVER}/fail?sv=2024&sig=S3CR3T", "--valid-status", "200",
                          "--probes", "2")
    assert "S3CR3T" not in json.dumps(answer), "a SAS signature leaked into the answer"
    evidence = ctx(issues_of(answer, "StatusCodeValidationFailed")[0])
    assert evidence["statusCodes"] == "500" and evidence["validStatusCodes"] == "[200]", evidence
    assert (answer["connectionStatus"], answer["probesFailed"]) == ("Unreachable", 2)
    assert evidence["request"] == "GET /fail", evidence
    _, good = net.check(f"http://{SERVER}/", "--valid-status", "200", "--probes", "2")
    assert (good["connectionStatus"], errors_in(good)) == ("Reachable", []), good


def test_malformed_response_headers_fail_header_validation(net):
    _, answer = net.check(f"http://{SERVER}/badheaders", "--probes", "1")
    found = issues_of(answer, "HeaderValidationFailed")
    assert found and "more than 100 headers" in ctx(found[0])["detail"], answer["issues"]
    assert answer["connectionStatus"] == "Unreachable"


def test_https_request_succeeds_through_tls(net):
    code, answer = net.check(f"https://{SERVER}/", "--valid-status", "200", "--probes", "2")
    assert (code, answer["connectionStatus"], errors_in(answer)) == (0, "Reachable", []), answer


def test_rule_dropping_every_other_syn_gives_degraded(net):
    net.nft("inet", "output", f"tcp dport {HTTP_PORT} numgen inc mod 2 1 drop")
    code, answer = net.check(SERVER, "--port", str(HTTP_PORT), "--probes", "4")
    assert (code, answer["connectionStatus"]) == (0, "Degraded"), "Degraded reports success"
    assert 0 < answer["probesFailed"] < answer["probesSent"] == 4, answer
    evidence = ctx(issues_of(answer, "GuestFirewall")[0])
    assert evidence["match"].startswith("possible"), "numgen cannot be evaluated: say so"
    assert "numgen inc mod 2" in evidence["rule"], evidence


def test_ipv6_preferred_reaches_the_aaaa_address(net):
    with net.ipv6():
        listener = net.server.popen([PYTHON, "-c", "import socket,time; s=socket.socket("
                                     "socket.AF_INET6); s.bind(('fd00:199:2::2', 8080)); "
                                     "s.listen(); time.sleep(30)"])
        try:
            wait_tcp(net.server, "fd00:199:2::2", 8080)
            code, answer = net.check("web.cc.test", "--port", "8080", "--ip-version", "IPv6",
                                     "--probes", "3")
            _, closed = net.check("fd00:199:2::2", "--port", str(CLOSED_PORT), "--probes", "1")
        finally:
            listener.kill()
            listener.wait()
    assert (code, answer["connectionStatus"], answer["probesFailed"]) == (0, "Reachable", 0), \
        answer
    assert answer["hops"][0]["address"] == CLIENT6, answer["hops"]
    assert issues_of(answer, "TraceRouteUnavailable"), "IPv6 hops are not traced: say so"
    assert errors_in(closed) == ["NoListenerOnDestination"], closed["issues"]


def test_icmp_reaches_the_server_with_hops(net):
    code, answer = net.check(SERVER, "--protocol", "icmp", "--probes", "3")
    assert (code, answer["connectionStatus"], answer["probesSent"]) == (0, "Reachable", 3)
    assert [h["address"] for h in answer["hops"]] == [CLIENT, ROUTER_IN, SERVER], answer["hops"]


def test_cpu_pressure_from_other_processes_is_a_warning(net):
    burn = "import time\nend = time.time() + 15\nwhile time.time() < end: pass"
    burners = [net.client.popen([PYTHON, "-c", burn]) for _ in range(3)]
    try:
        _, answer = net.check(SERVER, "--port", str(HTTP_PORT), "--probes", "10")
    finally:
        for child in burners:
            child.kill()
            child.wait()
    cpu = issues_of(answer, "CPU")
    assert cpu and cpu[0]["severity"] == "Warning", answer["issues"]
    assert float(ctx(cpu[0])["cpuPercent"]) >= 90, ctx(cpu[0])
    assert answer["connectionStatus"] == "Reachable", "pressure is a warning, not a failure"


def test_without_root_tcp_still_answers_and_hops_say_why_not(net):
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    tcp = net.client.run([*nobody, PYTHON, "-m", "connectivity", SERVER, "--port",
                          str(HTTP_PORT), "--probes", "2", "--json"], timeout=60, check=False,
                         cwd=str(ROOT))
    icmp = net.client.run([*nobody, PYTHON, "-m", "connectivity", SERVER, "--protocol", "icmp",
                           "--probes", "2", "--json"], timeout=60, check=False, cwd=str(ROOT))
    answer, pinged = json.loads(tcp.stdout), json.loads(icmp.stdout)
    assert (tcp.returncode, answer["connectionStatus"]) == (0, "Reachable"), tcp.stderr
    assert "raw sockets" in ctx(issues_of(answer, "TraceRouteUnavailable")[0])["detail"]
    assert "ping_group_range" in ctx(issues_of(pinged, "NetworkError")[0])["detail"], pinged


def test_table_output_names_hops_and_issue(net):
    net.nft("inet", "output", f"tcp dport {HTTP_PORT} drop")
    done = net.cli(SERVER, "--port", str(HTTP_PORT), "--probes", "1")
    assert done.returncode == E.UNREACHABLE, done.stderr
    assert "GuestFirewall" in done.stdout and "tcp dport 80 drop" in done.stdout, done.stdout
