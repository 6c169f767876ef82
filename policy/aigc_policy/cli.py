"""`aigc-edge`: one entry point, one module per subcommand.

Each subcommand module exposes `add_arguments(parser)` and `run(args) -> int`. Modules are
imported only when their subcommand runs, so `aigc-edge operator` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from aigc_policy.allocator import retain_freed_memory
from aigc_policy.errors import UsageError

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("aigc_operator.demo", "run the whole system end to end on a local control plane"),
    "bench": ("aigc_policy.bench.command", "compare schedulers on a simulated workload"),
    "operator": ("aigc_operator.command", "run the AIGCTask scheduling operator (kopf) against a cluster"),
    "worker": ("aigc_worker.command", "run the Stable Diffusion worker on this node (profile, tiny models)"),
    "train": ("aigc_policy.rl.train", "train a learned scheduler (eat, dsac, sac) on a scenario"),
    "export": ("aigc_policy.rl.export", "export a trained checkpoint to ONNX"),
    "policy-latency": ("aigc_policy.latency", "measure end-to-end decision latency of an ONNX policy"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="aigc-edge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = argv[0] if argv and not argv[0].startswith("-") else None
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text)
        if name == wanted:
            importlib.import_module(module).add_arguments(sp)
    args = parser.parse_args(argv)
    retain_freed_memory()  # the operator, bench and train encode a state per decision: see aigc_policy.allocator
    try:
        return int(importlib.import_module(SUBCOMMANDS[args.command][0]).run(args) or 0)
    except UsageError as exc:
        print(f"aigc-edge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder given on the command line cannot be read or written
        where = f"{exc.filename}: {exc.strerror}" if exc.filename is not None else str(exc)
        print(f"aigc-edge {args.command}: error: {where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
