"""The ``ahl`` command line: a thin Typer + Rich shell over the Python API."""
