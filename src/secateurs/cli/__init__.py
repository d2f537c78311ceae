"""Command-line interface (``secateurs --help``)."""
