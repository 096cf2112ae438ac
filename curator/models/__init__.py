"""Where model weights come from.

Weights are read from the model directory (``models.dir`` / ``CURATOR_MODEL_DIR``), or
from files a package ships (TransNetV2, RapidOCR, BRISQUE). Nothing here downloads at
run time; ``curator models download`` is the one command that touches a hub.
"""

from typing import Any


def read_state_dict(path: str) -> Any:
    """A PyTorch checkpoint's weights (a bare state dict, or one under "state_dict"), on the CPU,
    without running pickled code."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state
