"""Command groups of the ``ragserve`` CLI, one module each (see ``ragserve.cli``)."""
