#!/usr/bin/env python3
"""Issue 14's memory-before-authentication check, as a measurement (not a timed test).

Starts `shoal serve` with an internal port on loopback, then opens CONNECTIONS unauthenticated
connections to it at once, each announcing a maximal frame (64 MiB - 1) and streaming junk
after the length prefix, as an attacker would. Meanwhile it samples the server's RSS
(/proc/PID/status) and the latency of `GET /healthz` every 20 ms, and prints the baseline, the
peak RSS increase and the slowest /healthz answer.

    python3 benches/internal_port_flood.py [target/release/shoal] [CONNECTIONS]

Issue 14's target: 100 connections raise RSS by < 64 MiB and /healthz answers within 100 ms
throughout.
"""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def healthz_ms(api):
    t = time.perf_counter()
    urllib.request.urlopen(f"http://{api}/healthz", timeout=5).read()
    return (time.perf_counter() - t) * 1000


def attacker(internal, sent, stop):
    """One unauthenticated connection: a 64 MiB - 1 length prefix, then junk until refused."""
    try:
        s = socket.create_connection(internal, timeout=5)
        s.sendall(struct.pack("<I", (64 << 20) - 1))
        junk = os.urandom(64 << 10)
        while not stop.is_set():
            s.sendall(junk)
            sent[0] += len(junk)
    except OSError:
        pass  # refused or closed by the server: what it should do


def main():
    shoal = sys.argv[1] if len(sys.argv) > 1 else "target/release/shoal"
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    api_port, internal_port = free_port(), free_port()
    api = f"127.0.0.1:{api_port}"
    internal = ("127.0.0.1", internal_port)
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [shoal, "serve", "--listen", api, "--data-dir", data,
             "--internal-listen", f"127.0.0.1:{internal_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 30
            while True:
                try:
                    healthz_ms(api)
                    break
                except OSError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.1)
            time.sleep(1)
            base = rss_kib(server.pid)
            stop = threading.Event()
            sent = [0]
            threads = [threading.Thread(target=attacker, args=(internal, sent, stop), daemon=True)
                       for _ in range(connections)]
            for t in threads:
                t.start()
            peak, slowest, samples = base, 0.0, 0
            end = time.time() + 10
            while time.time() < end:
                peak = max(peak, rss_kib(server.pid))
                slowest = max(slowest, healthz_ms(api))
                samples += 1
                time.sleep(0.02)
            stop.set()
            time.sleep(1)
            after = rss_kib(server.pid)
            print(f"{connections} unauthenticated connections, each announcing a 64 MiB frame "
                  f"({sent[0] / 2**20:.1f} MiB of junk sent in all):")
            print(f"  RSS baseline {base / 1024:.1f} MiB, peak {(peak - base) / 1024:+.1f} MiB, "
                  f"after {(after - base) / 1024:+.1f} MiB")
            print(f"  /healthz: {samples} samples, slowest {slowest:.1f} ms")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
