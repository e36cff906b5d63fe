"""The ``clik`` command line: one module per command under ``commands/``."""
