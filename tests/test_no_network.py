"""A stoic run makes no network attempt: no connect() and no DNS query to an inet address.

The onnxruntime build we ship starts a telemetry thread when it is imported that resolves
mobile.events.data.microsoft.com about 9 s later (stoic_cli/runtime/onnx.py turns it off). The
test runs `stoic neutralize` for real under strace, in a child that then stays alive for 12 s
more so that a delayed lookup would be seen, and fails on any connect/sendto/sendmsg/sendmmsg
whose address is AF_INET or AF_INET6 (glibc's resolver connects a UDP socket to port 53 before
sending, so a DNS lookup shows up as such a connect). AF_UNIX sockets are ignored."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "tests" / "data" / "london" / "011_smiling.jpg"
WAIT_AFTER_RUN_S = 12  # the telemetry lookup came ~9 s after the sessions were created

# The real CLI entry point, then a wait that keeps ONNX Runtime's threads alive.
CHILD = """
import sys, time
photo, out, wait = sys.argv[1:4]
sys.argv = ["stoic", "neutralize", photo, "-o", out, "--device", "cpu"]
from stoic_cli.cli import main
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
time.sleep(float(wait))
sys.exit(code)
"""

INET = re.compile(r"sa_family=AF_INET6?\b")
NETWORK_CALL = re.compile(r"\b(connect|sendto|sendmsg|sendmmsg)\(")


def _strace_works() -> str | None:
    """Why strace cannot be used here, or None when it can."""
    strace = shutil.which("strace")
    if not strace:
        return "strace is not installed"
    probe = subprocess.run([strace, "-f", "-qq", "-e", "trace=none", sys.executable, "-c", "pass"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"strace cannot trace here (ptrace not permitted?): {probe.stderr.strip()[-200:]}"
    return None


def test_a_run_makes_no_connect_or_dns_attempt(tmp_path):
    why = _strace_works()
    if why:
        pytest.skip(why)
    assert PHOTO.exists(), PHOTO
    trace = tmp_path / "strace.txt"
    out = tmp_path / "out"
    env = dict(os.environ)
    env.pop("ORT_DISABLE_TELEMETRY", None)  # stoic itself must turn telemetry off
    cmd = ["strace", "-f", "-qq", "-s", "96", "-o", str(trace),
           "-e", "trace=execve,connect,sendto,sendmsg,sendmmsg",
           sys.executable, "-c", CHILD, str(PHOTO), str(out), str(WAIT_AFTER_RUN_S)]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert list(out.glob("*.jpg")), f"no output written: {run.stderr[-2000:]}"

    lines = trace.read_text(errors="replace").splitlines()
    assert any("execve(" in line for line in lines), "strace recorded nothing: the check would be blind"
    attempts = [line for line in lines if NETWORK_CALL.search(line) and INET.search(line)]
    assert not attempts, "network attempts during a stoic run:\n" + "\n".join(attempts[:10])
