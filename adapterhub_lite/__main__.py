"""``python -m adapterhub_lite`` runs the ``ahl`` command line."""

from .cli.main import app

app()
