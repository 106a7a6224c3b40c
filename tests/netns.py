"""Simulated hosts on one machine, for tests/e2e/test_hosts.py: one network namespace per host, each joined
by a veth link to a switch (a bridge in a namespace of its own), on a private /24 chosen where nothing
else routes, and faults on the wire (iptables in the switch's namespace: a host's port cut, or a share of
its packets dropped at random). A kernel without the netem qdisc cannot delay packets: a Toxiproxy in the
broker's namespace delays a host's bytes instead (``Toxiproxy``), which the host reaches through a DNAT
rule in its own namespace.

The process running this (the test) joins the switch too, from the root namespace, as host ``driver``:
it creates the topics, feeds the input and reads the output over the same private network, on a link of
its own that no fault touches. Nothing is forwarded or routed beyond the /24.

Needs root. Every namespace and link made here carries the creating process's pid in its name, so what a
run killed before its clean-up left behind is removed by the next run (``remove_leftovers``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

PREFIX = "kiph"  # kafka-inference-pipeline hosts
DRIVER = "driver"
_LEFTOVER = re.compile(rf"^{PREFIX}(\d+)(-|$)")


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()[-1000:]}")
    return done


def unavailable() -> str | None:
    """Why simulated hosts cannot run here (None when they can): root, iproute2 and iptables, and the
    permission to make a network namespace with a veth link and an iptables rule in it."""
    if os.geteuid() != 0:
        return "simulated hosts need root (network namespaces, veth links, iptables)"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install {package}; ./scripts/test installs it as root)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        made = sh("ip", "netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"`ip netns add` is not permitted here: {made.stderr.strip()[-300:]}"
        for cmd in (
            ("ip", "-n", probe, "link", "add", "name", "probe0", "type", "veth", "peer", "name", "probe1"),
            ("ip", "netns", "exec", probe, "iptables", "-A", "FORWARD", "-m", "statistic", "--mode", "random",
             "--probability", "0.05", "-j", "DROP"),
        ):  # fmt: skip
            done = sh(*cmd, check=False)
            if done.returncode != 0:
                return f"`{' '.join(cmd[3:] if cmd[1] == 'netns' else cmd)}` fails here: {done.stderr.strip()[-300:]}"
        return None
    finally:
        sh("ip", "netns", "del", probe, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespace_pids(ns: str) -> list[int]:
    done = sh("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def kill_namespace_processes(ns: str, timeout_s: float = 10.0) -> list[int]:
    """SIGKILL every process in ``ns`` (its whole "host") and wait until none is left; the pids killed."""
    killed: list[int] = []  # each once, though a process may be seen again while it exits
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = namespace_pids(ns)
        if not pids:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.05)
    raise RuntimeError(f"processes still in namespace {ns} after {timeout_s} s: {namespace_pids(ns)}")


def remove_leftovers() -> list[str]:
    """Namespaces and root links named by this module for a process that no longer runs: their
    processes killed, then removed. Returns what was removed."""
    removed: list[str] = []
    listed = sh("ip", "netns", "list", check=False).stdout.split("\n")
    for name in (line.split()[0] for line in listed if line.strip()):
        found = _LEFTOVER.match(name)
        if found and int(found.group(1)) != os.getpid() and not _pid_alive(int(found.group(1))):
            kill_namespace_processes(name)
            sh("ip", "netns", "del", name, check=False)
            removed.append(name)
    for link in json.loads(sh("ip", "-j", "link", "show", check=False).stdout or "[]"):
        found = _LEFTOVER.match(link.get("ifname", ""))
        if found and not _pid_alive(int(found.group(1))):
            sh("ip", "link", "del", link["ifname"], check=False)
            removed.append(link["ifname"])
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0-10.254.255.0 that no address or route of the root namespace overlaps."""
    taken = [
        ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
        for link in json.loads(sh("ip", "-j", "-4", "addr", "show").stdout or "[]")
        for a in link.get("addr_info", [])
    ]
    for route in json.loads(sh("ip", "-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        if route.get("dst", "default") != "default":
            taken.append(ipaddress.ip_network(route["dst"], strict=False))
    rng = random.Random()
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{rng.randint(200, 254)}.{rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free private /24 found in 10.200-254.x.0")


class Lan:
    """Hosts (network namespaces) on one switch. ``addr[host]`` is each host's address; ``ns[host]`` its
    namespace; the driver (this process, in the root namespace) is on the switch as well."""

    def __init__(self, hosts: list[str]) -> None:
        self.tag = f"{PREFIX}{os.getpid()}"
        self.hosts = list(hosts)
        self.switch = f"{self.tag}-switch"
        self.ns = {host: f"{self.tag}-{host}" for host in hosts}
        self.driver_link = self.tag  # the driver's end of its link, in the root namespace
        self.net = _free_subnet()
        self.addr = {host: str(self.net.network_address + 1 + i) for i, host in enumerate(hosts)}
        self.addr[DRIVER] = str(self.net.network_address + 254)
        self._made: list[str] = []

    def port(self, host: str) -> str:
        """The switch's port that ``host`` is plugged into."""
        return f"p-{host}"[:15]

    def up(self) -> Lan:
        remove_leftovers()
        prefix = self.net.prefixlen
        sh("ip", "netns", "add", self.switch)
        self._made.append(self.switch)
        sw = ("ip", "-n", self.switch)
        sh(*sw, "link", "add", "br0", "type", "bridge")
        sh(*sw, "link", "set", "br0", "up")
        for host in self.hosts:
            ns = self.ns[host]
            sh("ip", "netns", "add", ns)
            self._made.append(ns)
            sh(*sw, "link", "add", self.port(host), "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.addr[host]}/{prefix}", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh(*sw, "link", "add", self.port(DRIVER), "type", "veth", "peer", "name", self.driver_link, "netns", "1")
        sh("ip", "addr", "add", f"{self.addr[DRIVER]}/{prefix}", "dev", self.driver_link)
        sh("ip", "link", "set", self.driver_link, "up")
        for host in [*self.hosts, DRIVER]:
            sh(*sw, "link", "set", self.port(host), "master", "br0")
            sh(*sw, "link", "set", self.port(host), "up")
        # bridged frames pass the switch's iptables (the faults' rules), and only the switch's
        sh("ip", "netns", "exec", self.switch, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1")
        return self

    def exec_prefix(self, host: str) -> list[str]:
        """Prefix a command with this to run it on ``host`` (the process and its children stay there)."""
        return ["ip", "netns", "exec", self.ns[host]]

    def run_on(self, host: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(*self.exec_prefix(host), *cmd, check=check)

    def kill_host(self, host: str) -> list[int]:
        """Every process of ``host`` killed with SIGKILL, as a machine that dies."""
        return kill_namespace_processes(self.ns[host])

    # ----------------------------------------------------------------------------------- faults

    def _switch_rules(self, host: str, *match: str) -> list[list[str]]:
        port = self.port(host)
        comment = ["-m", "comment", "--comment", f"{self.tag}-fault-{host}"]
        return [
            ["-m", "physdev", "--physdev-in", port, *match, *comment, "-j", "DROP"],
            ["-m", "physdev", "--physdev-out", port, *match, *comment, "-j", "DROP"],
        ]

    def cut(self, host: str) -> None:
        """Every frame to and from ``host`` dropped at the switch, silently, as a pulled cable."""
        for rule in self._switch_rules(host):
            self.run_on_switch("iptables", "-I", "FORWARD", *rule)

    def lose(self, host: str, probability: float) -> None:
        """A random share of the frames to and from ``host`` dropped at the switch, each way."""
        for rule in self._switch_rules(host, "-m", "statistic", "--mode", "random", "--probability", str(probability)):
            self.run_on_switch("iptables", "-A", "FORWARD", *rule)

    def heal(self, host: str) -> int:
        """Every fault rule for ``host`` removed from the switch; how many there were."""
        listed = self.run_on_switch("iptables", "-S", "FORWARD").stdout.splitlines()
        mine = [line for line in listed if f"{self.tag}-fault-{host}" in line]
        for line in mine:
            self.run_on_switch("iptables", *_delete_args(line))
        return len(mine)

    def redirect(self, host: str, dest: str, to: str) -> None:
        """On ``host``, new TCP connections to ``dest`` (ADDR:PORT) go to ``to`` (ADDR:PORT) instead."""
        addr, port = dest.rsplit(":", 1)
        self.run_on(
            host, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", addr, "--dport", port,
            "-j", "DNAT", "--to-destination", to,
        )  # fmt: skip

    def unredirect(self, host: str) -> None:
        self.run_on(host, "iptables", "-t", "nat", "-F", "OUTPUT")

    def run_on_switch(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.switch, *cmd)

    # -------------------------------------------------------------------------------- clean-up

    def down(self) -> list[str]:
        """Every process in the namespaces killed, the namespaces (their links, addresses and iptables
        rules with them) and the driver's link removed. Returns the problems met (none: an empty list)."""
        problems: list[str] = []
        for ns in reversed(self._made):
            try:
                kill_namespace_processes(ns)
            except RuntimeError as exc:
                problems.append(str(exc))
            done = sh("ip", "netns", "del", ns, check=False)
            if done.returncode != 0:
                problems.append(f"ip netns del {ns}: {done.stderr.strip()}")
        self._made.clear()
        if sh("ip", "link", "show", self.driver_link, check=False).returncode == 0:
            sh("ip", "link", "del", self.driver_link, check=False)
        return problems

    def leftovers(self) -> list[str]:
        """What of this Lan still exists (namespaces, the driver's link): empty after ``down``."""
        names = sh("ip", "netns", "list", check=False).stdout.split()
        left = [ns for ns in [self.switch, *self.ns.values()] if ns in names]
        if sh("ip", "link", "show", self.driver_link, check=False).returncode == 0:
            left.append(self.driver_link)
        return left

    def __enter__(self) -> Lan:
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.down()


def _delete_args(rule: str) -> list[str]:
    """``iptables -S`` prints ``-A CHAIN ...``: the same rule as arguments of ``iptables -D``."""
    import shlex

    words = shlex.split(rule)
    assert words[0] == "-A", rule
    return ["-D", *words[1:]]


TOXIPROXY_LOCAL = Path(__file__).resolve().parents[1] / "infra" / "toxiproxy" / "toxiproxy-local"


def toxiproxy_server() -> tuple[str | None, str]:
    """The Toxiproxy server's path (built once by infra/toxiproxy/toxiproxy-local), or None and why not."""
    try:
        done = subprocess.run([str(TOXIPROXY_LOCAL), "path"], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"infra/toxiproxy/toxiproxy-local path: {exc}"
    if done.returncode != 0:
        return None, f"Toxiproxy cannot be built here: {done.stderr.strip()[-400:]}"
    return done.stdout.strip().splitlines()[-1], ""


class Toxiproxy:
    """A Toxiproxy server on ``host`` whose API listens on ``addr:api_port``: proxies and toxics."""

    def __init__(self, lan: Lan, host: str, server: str, api_port: int, log: Path) -> None:
        self.lan, self.host, self.api = lan, host, f"http://{lan.addr[host]}:{api_port}"
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [*lan.exec_prefix(host), server, "-host", lan.addr[host], "-port", str(api_port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                self._call("GET", "/version")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"toxiproxy did not start (log {log}: {log.read_text()[-500:]})") from None
                time.sleep(0.1)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=5) as resp:
            raw = resp.read()
            if resp.headers.get_content_type() == "application/json":
                return json.loads(raw)
        return raw.decode()  # /version answers in plain text

    def proxy(self, name: str, listen: str, upstream: str) -> None:
        self._call("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True})

    def latency(self, proxy: str, ms: int) -> None:
        """``ms`` added to the bytes of every connection through ``proxy``, in each direction."""
        for stream in ("upstream", "downstream"):
            self._call(
                "POST",
                f"/proxies/{proxy}/toxics",
                {"name": f"latency-{stream}", "type": "latency", "stream": stream, "attributes": {"latency": ms}},
            )

    def clear(self, proxy: str) -> None:
        for toxic in self._call("GET", f"/proxies/{proxy}/toxics"):
            self._call("DELETE", f"/proxies/{proxy}/toxics/{toxic['name']}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()
