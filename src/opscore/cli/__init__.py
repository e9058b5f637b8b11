"""The ``opscore`` command line. The click group is :data:`opscore.cli.main.main`."""
