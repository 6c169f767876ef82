"""One member of a test gang (run as a separate process): generate and save the decoded image.

    python gang_member.py CATALOG MODEL RANK WORLD PORT OUT.npy [die]

WORLD 1 generates alone. `die` makes the process exit abruptly after its first denoising step (a
killed worker); the survivors must then fail with GangMemberLost instead of hanging.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from aigc_api.catalog import load_catalog
from aigc_worker.parallel.rendezvous import GangError, joined_gang, open_store
from aigc_worker.pipelines import ImageJob, Placement, gang_layout, generate, load_model

GANG_TIMEOUT_S = 20.0


def main() -> int:
    catalog_path, model_name, rank, world, port, out = sys.argv[1:7]
    rank, world = int(rank), int(world)
    dies = sys.argv[7:] == ["die"]
    model = load_model(load_catalog(Path(catalog_path)).get(model_name), Placement())
    job = ImageJob("a photo of the cat", "", 64, 64, 4, seed=7)
    if dies:
        model.denoiser.register_forward_hook(lambda *_: os._exit(3))
    if world == 1:
        image = generate(model, job).image
    else:
        layout = gang_layout(model, job, world, rank)
        store = open_store("127.0.0.1", GANG_TIMEOUT_S, int(port)) if rank == 0 else None
        try:
            with joined_gang(layout, store, f"127.0.0.1:{port}", "test/1", "gloo", GANG_TIMEOUT_S) as gang:
                image = generate(model, job, gang).image
        except GangError as exc:
            print(f"GangError {exc.reason}", flush=True)
            return 4
    if image is not None:
        np.save(out, image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
