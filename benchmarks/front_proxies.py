"""What the docker front costs over the proxy hop itself, and why the front is HAProxy, not nginx.

On loopback, with no container: the iris example's package served by `mlops-ci serve`, then
  - the rate and p99 of single-row /score straight to it, through a bare HAProxy (its server
    and nothing else), through the front (`mlops-ci front`: HAProxy with the configuration it
    writes, routed over its admin API, and its controller reading the per-request log into the
    metrics) and through a bare nginx (an upstream with keep-alive), with wrk at 1 and 8
    connections, the four alternated for --rounds rounds (medians); wrk pinned to CPU 0, the
    version and every proxy (the front's controller too) to CPU 1, so whatever the front
    spends on top of the hop shows;
  - nginx's reload under load: 4 Python clients on keep-alive connections score through nginx
    while it is reloaded --reloads times (how open-source nginx changes an upstream or a
    weight), and the failed requests are counted. The HAProxy front changes its routes over the
    runtime API instead, and reloads nothing (tests/integration/test_front.py switches under load).

Target (issue 42): the front at >= 0.95x the bare HAProxy's req/s and p99 <= 1.1x its p99, at
1 and 8 connections (the hop itself is the bound: 0.71x the direct rate at 1 connection).

Needs haproxy and wrk, nginx for its row and the reloads (Debian's packages: apt-get install
haproxy wrk nginx-light), and the test extra (pip install -e '.[test]').

Run: python benchmarks/front_proxies.py [--rounds 7] [--reloads 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from _example import packaged_example
from _wrk import Load, alternated, wrk_path

ROOT = Path(__file__).resolve().parents[1]
ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}

HAPROXY = """\
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend f
  bind {listen}
  default_backend b
backend b
  server s1 {upstream}
"""

NGINX = """\
worker_processes 1;
pid {work}/nginx.pid;
error_log stderr error;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  upstream version {{ server 127.0.0.1:{upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://version;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def until(done: Callable[[], bool], failed: str) -> None:
    """Ask ``done`` every 0.1 s for up to 60 s (an HTTP error is a no); exit with ``failed``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if done():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(failed)


def ready(url: str) -> None:
    until(lambda: httpx.post(f"{url}/score", json=ROW, timeout=2).status_code == 200,
          f"{url} did not answer")  # fmt: skip


# The front's target against the bare proxy (issue 42).
MIN_RATE, MAX_P99 = 0.95, 1.1
TOKEN_ENV = "BENCH_FRONT_TOKEN"


def hop_rows(urls: dict[str, str], rounds: int, seconds: float, taskset: str | None) -> bool:
    """``urls`` (direct, haproxy, front, ...) alternated at 1 and 8 connections; a row each
    with its ratios to the bare HAProxy; True when the front's targets hold at both."""
    met = True
    for connections in (1, 8):
        runs = alternated(
            {k: f"{u}/score" for k, u in urls.items()}, ROW, connections, rounds, seconds, taskset
        )
        rps = {k: statistics.median(r.rps for r in v) for k, v in runs.items()}
        p99 = {k: statistics.median(r.p99_ms for r in v) for k, v in runs.items()}
        for name, loads in runs.items():
            print(f"{connections} connection(s) {name:>8}: {rps[name]:7,.0f} req/s "
                  f"({rps[name] / rps['haproxy']:.2f}x bare HAProxy, "
                  f"{rps[name] / rps['direct']:.2f}x direct), p99 {p99[name]:.2f} ms "
                  f"({p99[name] / p99['haproxy']:.2f}x bare HAProxy), errors "
                  f"{sum(r.errors for r in loads)}, rounds {_rounds(loads)}")  # fmt: skip
        rate, tail = rps["front"] / rps["haproxy"], p99["front"] / p99["haproxy"]
        errors = sum(r.errors for r in runs["front"])
        ok = rate >= MIN_RATE and tail <= MAX_P99 and errors == 0
        met &= ok
        print(f"{connections} connection(s): front/bare HAProxy {rate:.2f}x req/s (target >= "
              f"{MIN_RATE}), p99 {tail:.2f}x (target <= {MAX_P99}) "
              f"[{'met' if ok else 'NOT met'}]")  # fmt: skip
    return met


def _rounds(loads: list[Load]) -> str:
    return " ".join(f"{r.rps:,.0f}" for r in loads)


def run_front(port: int, upstream: int, state_dir: str) -> None:
    """The front as `mlops-ci front` runs it, in this (child) process: the one difference is
    that a version container's name resolves to loopback here."""
    from mlops_ci.serve.front import serve_front
    from mlops_ci.serve.frontroutes import UpstreamRule

    async def loopback(_host: str, port: int) -> str:
        return f"127.0.0.1:{port}"

    rule = UpstreamRule("bench", upstream)
    token = os.environ[TOKEN_ENV]
    asyncio.run(
        serve_front("bench", "127.0.0.1", port, Path(state_dir), token, rule, resolve=loopback)
    )


def route_front(url: str, upstream: int, token: str) -> None:
    """All of the front's traffic to the one version, over its admin API (as a deploy does)."""
    body = {"upstreams": {"1": f"http://bench-v1:{upstream}"}, "weights": {"1": 100}}
    auth = {"authorization": f"Bearer {token}"}
    until(
        lambda: httpx.put(f"{url}/admin/front", json=body, headers=auth).status_code == 200,
        f"the front at {url} did not take its route",
    )


def nginx_reloads(url: str, conf: Path, reloads: int, clients: int) -> None:
    results: Counter[str] = Counter()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                try:
                    answer = http.post(f"{url}/score", json=ROW)
                    results[str(answer.status_code)] += 1
                except httpx.HTTPError as err:
                    results[type(err).__name__] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    for _ in range(reloads):
        subprocess.run(["nginx", "-c", str(conf), "-s", "reload"], check=True, capture_output=True)
        time.sleep(0.3)
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join(30)
    failed = sum(n for k, n in results.items() if k != "200")
    print(f"nginx reloaded {reloads} times under {clients} keep-alive clients: "
          f"{failed} of {sum(results.values()):,} requests failed {dict(results)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0, help="of each wrk round")
    parser.add_argument("--reloads", type=int, default=40)
    parser.add_argument("--run-front", nargs=3, metavar=("PORT", "UPSTREAM", "STATE"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.run_front:
        port, upstream, state = args.run_front
        run_front(int(port), int(upstream), state)
        return
    wrk_path()
    if shutil.which("haproxy") is None:
        sys.exit("haproxy is not installed: apt-get install haproxy wrk")
    nginx = shutil.which("nginx") is not None
    if not nginx:
        print("nginx is not installed (apt-get install nginx-light): its row and reloads skipped")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: wrk on CPU 0, the version and the proxies on CPU 1")
    from tests.support.serve_helpers import free_port

    work = Path(tempfile.mkdtemp(prefix="bench-proxies-"))
    model_dir = packaged_example(work)[0]
    upstream, via_haproxy, via_front, via_nginx = (free_port() for _ in range(4))
    pin = ["taskset", "-c", "1"]
    token = os.urandom(16).hex()
    processes = [
        subprocess.Popen(
            [*pin, sys.executable, "-m", "mlops_ci", "serve", "--model-dir", str(model_dir),
             "--port", str(upstream), "--no-collect"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    (work / "haproxy.cfg").write_text(
        HAPROXY.format(listen=f"127.0.0.1:{via_haproxy}", upstream=f"127.0.0.1:{upstream}")
    )
    nginx_conf = work / "nginx.conf"
    nginx_conf.write_text(NGINX.format(work=work, port=via_nginx, upstream=upstream))
    try:
        ready(f"http://127.0.0.1:{upstream}")
        processes.append(
            subprocess.Popen([*pin, "haproxy", "-db", "-q", "-f", str(work / "haproxy.cfg")])
        )
        processes.append(
            subprocess.Popen(
                [*pin, sys.executable, __file__, "--run-front", str(via_front), str(upstream),
                 str(work / "front")],
                env={**os.environ, TOKEN_ENV: token},
            )
        )  # fmt: skip
        if nginx:
            processes.append(
                subprocess.Popen([*pin, "nginx", "-c", str(nginx_conf), "-g", "daemon off;"])
            )
        urls = {
            "direct": f"http://127.0.0.1:{upstream}",
            "haproxy": f"http://127.0.0.1:{via_haproxy}",
            "front": f"http://127.0.0.1:{via_front}",
        }
        if nginx:
            urls["nginx"] = f"http://127.0.0.1:{via_nginx}"
        route_front(urls["front"], upstream, token)
        for url in urls.values():
            ready(url)
        print(
            "single-row /score on loopback, wrk on CPU 0, the version and the proxies on CPU 1, "
            f"medians of {args.rounds} alternated rounds of {args.seconds:g} s"
        )
        hop_rows(urls, args.rounds, args.seconds, taskset="0")
        if nginx:
            nginx_reloads(urls["nginx"], nginx_conf, args.reloads, 4)
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
