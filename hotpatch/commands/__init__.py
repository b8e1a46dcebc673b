"""Subcommands of the ``hotpatch`` CLI, one module each (see :mod:`hotpatch.cli`)."""
