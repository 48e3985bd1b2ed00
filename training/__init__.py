"""Training, export and the network definitions (needs the ``torch`` extra)."""
