"""The two error classes every stage raises; the CLI maps them to exit codes and messages."""


class UserError(Exception):
    """Bad input or a missing tool: the message tells the user what to do. Exit code 2."""

    exit_code = 2


class VerificationError(UserError):
    """A bit-exactness check failed; the message names the stage and the offending inputs. Exit 3."""

    exit_code = 3


class MissingToolError(UserError):
    """A step needs a tool (Vivado, Vitis HLS, a board) that is not on this machine. Exit 4."""

    exit_code = 4
