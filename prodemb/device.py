"""Which torch device a job runs on (training, the Text-CNN and SBERT baselines of evaluation)."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU of this process (``LOCAL_RANK`` under torchrun) when CUDA is there, else the CPU.
    ``cuda`` / ``cuda:N`` without CUDA falls back to the CPU with a warning."""
    if name == "auto":
        return (
            torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.warning("CUDA requested but not available: falling back to CPU")
        return torch.device("cpu")
    return dev
