"""What a proxy hop costs here, and why the docker front is HAProxy and not nginx.

On loopback, with no container: the iris example's package served by `mlops-ci serve`, then
  - the rate and p99 of single-row /score straight to it, through a bare HAProxy (its server
    and nothing else) and through a bare nginx (an upstream with keep-alive), with wrk at 1 and
    8 connections, the three alternated for --rounds rounds (medians);
  - nginx's reload under load: 4 Python clients on keep-alive connections score through nginx
    while it is reloaded --reloads times (how open-source nginx changes an upstream or a
    weight), and the failed requests are counted. The HAProxy front changes its routes over the
    runtime API instead, and reloads nothing (tests/integration/test_front.py switches under load).

Needs haproxy, nginx and wrk (Debian's packages: apt-get install haproxy nginx-light wrk).

Run: python benchmarks/front_proxies.py [--rounds 5] [--reloads 40]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from _example import packaged_example
from _wrk import alternated, wrk_path

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
  bind 127.0.0.1:{port}
  default_backend b
backend b
  server s1 127.0.0.1:{upstream}
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


def ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.post(f"{url}/score", json=ROW, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"{url} did not answer")


def hop_cost(urls: dict[str, str], rounds: int, seconds: float) -> None:
    for connections in (1, 8):
        runs = alternated(
            {k: f"{u}/score" for k, u in urls.items()}, ROW, connections, rounds, seconds
        )
        direct = statistics.median(r.rps for r in runs["direct"])
        direct_p99 = statistics.median(r.p99_ms for r in runs["direct"])
        for name, loads in runs.items():
            rps = statistics.median(r.rps for r in loads)
            p99 = statistics.median(r.p99_ms for r in loads)
            print(f"{connections} connection(s) {name:>8}: {rps:7,.0f} req/s "
                  f"({rps / direct:.2f}x), "
                  f"p99 {p99:.2f} ms ({p99 / direct_p99:.2f}x), "
                  f"errors {sum(r.errors for r in loads)}")  # fmt: skip


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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="of each wrk round")
    parser.add_argument("--reloads", type=int, default=40)
    args = parser.parse_args()
    wrk_path()
    for tool in ("haproxy", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install haproxy nginx-light wrk")
    from tests.support.serve_helpers import free_port

    work = Path(tempfile.mkdtemp(prefix="bench-proxies-"))
    model_dir = packaged_example(work)[0]
    upstream, via_haproxy, via_nginx = free_port(), free_port(), free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "mlops_ci", "serve", "--model-dir", str(model_dir),
             "--port", str(upstream)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    (work / "haproxy.cfg").write_text(HAPROXY.format(port=via_haproxy, upstream=upstream))
    nginx_conf = work / "nginx.conf"
    nginx_conf.write_text(NGINX.format(work=work, port=via_nginx, upstream=upstream))
    try:
        ready(f"http://127.0.0.1:{upstream}")
        processes.append(
            subprocess.Popen(["haproxy", "-db", "-q", "-f", str(work / "haproxy.cfg")])
        )
        processes.append(subprocess.Popen(["nginx", "-c", str(nginx_conf), "-g", "daemon off;"]))
        urls = {
            "direct": f"http://127.0.0.1:{upstream}",
            "haproxy": f"http://127.0.0.1:{via_haproxy}",
            "nginx": f"http://127.0.0.1:{via_nginx}",
        }
        for url in urls.values():
            ready(url)
        print(f"single-row /score on loopback, wrk, medians of {args.rounds} rounds of "
              f"{args.seconds:g} s, the three alternated")  # fmt: skip
        hop_cost(urls, args.rounds, args.seconds)
        nginx_reloads(urls["nginx"], nginx_conf, args.reloads, 4)
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
