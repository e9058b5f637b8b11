"""``python -m opscore`` runs the ``opscore`` command line."""

from opscore.cli.main import main

if __name__ == "__main__":
    main(prog_name="opscore")
