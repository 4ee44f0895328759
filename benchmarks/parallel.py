"""The benchmarks' job runner: each job is one command in its own process (its output to a log file), at most
``workers`` at a time, one thread each unless the environment says otherwise. Issue 12's ``lightning-kd benchmark``
is meant to replace these scripts' loops."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_jobs(jobs: Sequence[tuple[str, list[str], Path]], env: Mapping[str, str], workers: int,
             poll_s: float = 5.0) -> dict[str, int]:
    """Run ``(label, command, log file)`` jobs, ``workers`` at a time; print when each starts and ends; return
    label -> exit code."""
    queue, running, codes = list(jobs), [], {}
    while queue or running:
        while queue and len(running) < workers:
            label, cmd, log_path = queue.pop(0)
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "w")  # noqa: SIM115 - closed when the job ends
            running.append((label, subprocess.Popen(cmd, env=dict(env), stdout=log, stderr=subprocess.STDOUT), log,
                            time.time()))
            print(f"started {label}", flush=True)
        time.sleep(poll_s)
        for item in list(running):
            label, proc, log, t0 = item
            if proc.poll() is not None:
                running.remove(item)
                log.close()
                codes[label] = proc.returncode
                print(f"finished {label}: rc {proc.returncode}, {time.time() - t0:.0f} s", flush=True)
    return codes
