"""The access log: batched lines within its interval, everything at flush; request ids."""

from __future__ import annotations

from pathlib import Path


def test_the_access_log_writes_batched_lines_within_its_interval_and_everything_at_flush(
    tmp_path: Path,
) -> None:
    import asyncio
    import json

    from mlops_ci.serve.accesslog import AccessLog, RequestIds

    path = tmp_path / "access.log"
    with open(path, "wb") as out:
        log = AccessLog(interval=0.05, max_bytes=10_000, fd=out.fileno())

        async def requests() -> tuple[int, int, int]:
            for i in range(3):
                log.write({"status": 200, "n": i})
            before = path.stat().st_size  # buffered: nothing written yet
            await asyncio.sleep(0.2)
            after = path.stat().st_size
            for i in range(3, 1000):  # past max_bytes: written without waiting for the timer
                log.write({"status": 200, "n": i})
            return before, after, path.stat().st_size

        before, after, full = asyncio.run(requests())
        assert before == 0 and after > 0 and full > 10_000
        log.flush()
        log.write({"status": 200, "n": 1000})  # off a loop (a direct call): written at once
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["n"] for line in lines] == list(range(1001))
    ids = RequestIds()
    made = {ids.new() for _ in range(1000)}
    assert len(made) == 1000 and len({RequestIds().new()[:16] for _ in range(5)}) == 5
