"""maskbnn: binarized CNNs for MaskedFace-Net, from Brevitas training to a bit-exact FINN accelerator.

Import root of the project. The design card's top-level folders are sub-packages:
``pipeline/`` is ``maskbnn.pipeline`` and ``models/`` is ``maskbnn.models`` (see pyproject.toml).
"""

__version__ = "0.1.0"
