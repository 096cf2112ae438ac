"""Where model weights come from.

Weights are read from the model directory (``models.dir`` / ``CURATOR_MODEL_DIR``), or
from files a package ships (TransNetV2, RapidOCR, BRISQUE). Nothing here downloads at
run time; ``curator models download`` is the one command that touches a hub.
"""
