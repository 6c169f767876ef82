"""The Stable Diffusion worker: claims AIGCTasks placed on its node and generates their images."""

import logging


def _not_the_torchvision_fallback(record: logging.LogRecord) -> bool:
    # Importing diffusers touches transformers' CLIP and SigLIP image processors, which the worker
    # never runs (no safety checker, no image inputs); without torchvision transformers warns at
    # every start that they fall back to PIL.
    return "requires torchvision (not installed)" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_not_the_torchvision_fallback)
