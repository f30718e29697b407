"""nmt: neural machine translation with attention, from the plain RNN to the Transformer."""

__version__ = "0.1.0"


class NmtError(Exception):
    """An error a user can fix (a missing file, bad input, a wrong setting); the CLI prints it on one line."""
