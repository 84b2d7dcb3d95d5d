"""maskbnn-board: the PYNQ driver for maskbnn's BNN accelerators, with a bit-exact emulation backend.

Installs on its own (numpy, pillow; pynq on the board). Nothing here imports torch, FINN or the
maskbnn project.
"""

__version__ = "0.1.0"
