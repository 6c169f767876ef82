"""`aigc-edge worker ...` with an execution ledger: every rank a worker runs is appended to the file
named by $AIGC_EXECUTION_LEDGER as one JSON line when it starts and one when it ends.

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


def _wrap(cls: type, path: str, node: str) -> None:
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
        _append(path, {"ev": "start", "t": time.time(), **base})
        outcome = original(self, rank_run)
        _append(
            path, {"ev": "end", "t": time.time(), "ok": outcome.succeeded, "reason": outcome.reason, **base}
        )
        return outcome

    cls.run = run


def main() -> int:
    path = os.environ.get("AIGC_EXECUTION_LEDGER")
    argv = sys.argv[1:]
    if path:
        node = argv[argv.index("--node") + 1] if "--node" in argv else "?"
        if "--simulate" in argv:
            from aigc_worker.simulate import SimulatedExecutor

            _wrap(SimulatedExecutor, path, node)
        else:
            from aigc_worker.execution import Executor

            _wrap(Executor, path, node)
    from aigc_policy.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
