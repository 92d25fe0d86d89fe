"""`onair demo` brings the stack up, says where everything listens, and stops it all on Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from onair.devstack import Devstack
from onair.devstack.process import alive


def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    onair = Path(sys.executable).parent / "onair"
    proc = subprocess.Popen(
        [str(onair), "demo", "--root", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None and proc.stdout is not None
    try:
        for line in proc.stderr:
            if "Press Ctrl-C" in line:
                break
        else:
            raise AssertionError(f"demo never became ready (exit {proc.wait()})")
        pids = [s["pid"] for s in json.loads((root / "devstack.json").read_text())["servers"].values()]
        assert len(pids) == 4 and all(alive(p) for p in pids)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        leftover = Devstack(root).down()  # whatever the outcome, leave no server behind
    assert leftover == [], "the demo left servers running"
    assert "export ONAIR_KAFKA_BOOTSTRAP=" in proc.stdout.read()
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"server pid {pid} still running after the demo stopped")
