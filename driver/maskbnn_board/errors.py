"""Errors the driver raises; the CLI prints their message and exits with their code.

The exit codes match the maskbnn project's (user error 2, verification failure 3, missing tool 4),
but the classes are the driver's own: the package must install and run without the project.
"""


class DriverError(Exception):
    """Bad input or a broken deployment folder; the message says what to do. Exit code 2."""

    exit_code = 2


class DeploymentError(DriverError):
    """A deployment folder is incomplete, altered or inconsistent."""


class GoldenMismatchError(DriverError):
    """The accelerator disagreed with the golden vectors. Exit code 3."""

    exit_code = 3


class BoardUnavailableError(DriverError):
    """The pynq backend cannot run here (no pynq, no FPGA manager). Exit code 4."""

    exit_code = 4


class AcceleratorTimeoutError(DriverError):
    """A DMA transfer did not finish in time: the accelerator is stalled or not loaded."""
