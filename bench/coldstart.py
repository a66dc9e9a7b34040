#!/usr/bin/env python3
"""bench/coldstart.py: time from exec to the first 200 on GET /healthz, several times.

Usage: coldstart.py RUNS LOG -- COMMAND [ARGS...]

Each run picks a free loopback port, starts COMMAND with GATEHOUSE_LISTEN set to it (the rest
of the environment as given), polls GET http://127.0.0.1:PORT/healthz every millisecond until it
answers 200, stops the server (SIGTERM, then SIGKILL after 10 s) and records the milliseconds
from just before the exec to the 200. The servers' output is appended to LOG. Prints one line:
the times of every run in milliseconds, separated by spaces.

The clock starts in this process, just before the fork, so the figure is what an orchestrator
sees: process start, settings, database open and migrations check, keys, the listener, and the
first request. Python's own start is not in it (hyperfine, timing a wrapper, would count it and
the server's shutdown too).
"""

import http.client
import os
import socket
import subprocess
import sys
import time

LIMIT_S = 30.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_200(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def one_run(command, log):
    port = free_port()
    env = dict(os.environ, GATEHOUSE_LISTEN="127.0.0.1:%d" % port)
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        while True:
            if answers_200(port):
                return (time.perf_counter() - start) * 1000.0
            if proc.poll() is not None:
                sys.exit("coldstart: the server exited (status %s) before answering; see %s" % (proc.returncode, log.name))
            if time.perf_counter() - start > LIMIT_S:
                sys.exit("coldstart: no 200 on /healthz within %d s; see %s" % (LIMIT_S, log.name))
            time.sleep(0.001)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit(__doc__)
    runs, log_path, command = int(sys.argv[1]), sys.argv[2], sys.argv[4:]
    with open(log_path, "a") as log:
        times = [one_run(command, log) for _ in range(runs)]
    print(" ".join("%.1f" % t for t in times))


if __name__ == "__main__":
    main()
