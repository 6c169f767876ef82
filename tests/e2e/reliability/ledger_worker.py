"""`aigc-edge worker ...` with an execution ledger: every rank a worker runs is appended to the file
named by $AIGC_EXECUTION_LEDGER as one JSON line when it starts and one when it ends (and, with
the real executor, one when it begins denoising).

The reliability lane counts executions here, on the worker side, so "nothing ran twice" does not
rest on the status the same components write. Lines are short single `write`s to an O_APPEND file,
so the workers' lines never interleave.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _append(path: str, record: dict[str, Any]) -> None:
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _wrap(cls: type, path: str, node: str, running: dict[str, Any]) -> None:
    original = cls.run

    def run(self: Any, rank_run: Any) -> Any:
        base = {
            "uid": rank_run.uid,
            "task": f"{rank_run.namespace}/{rank_run.name}",
            "attempt": rank_run.attempt,
            "rank": rank_run.rank,
            "node": node,
            "pid": os.getpid(),
        }
        running.clear()
        running.update(base)
        _append(path, {"ev": "start", "t": time.time(), **base})
        outcome = original(self, rank_run)
        _append(
            path, {"ev": "end", "t": time.time(), "ok": outcome.succeeded, "reason": outcome.reason, **base}
        )
        return outcome

    cls.run = run


def _mark_generation(path: str, running: dict[str, Any]) -> None:
    """Real executor: a `generate` line when a rank begins denoising (in a gang: once it formed),
    so a test can kill a member mid-generation rather than while it loads or waits."""
    from aigc_worker import execution

    original = execution.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        _append(path, {"ev": "generate", "t": time.time(), **running})
        return original(*args, **kwargs)

    execution.generate = generate


def main() -> int:
    path = os.environ.get("AIGC_EXECUTION_LEDGER")
    argv = sys.argv[1:]
    if path:
        node = argv[argv.index("--node") + 1] if "--node" in argv else "?"
        running: dict[str, Any] = {}  # the rank being run (a worker runs one at a time)
        if "--simulate" in argv:
            from aigc_worker.simulate import SimulatedExecutor

            _wrap(SimulatedExecutor, path, node, running)
        else:
            from aigc_worker.execution import Executor

            _wrap(Executor, path, node, running)
            _mark_generation(path, running)
    from aigc_policy.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
