"""``python -m crmbridge`` runs the command line."""

from crmbridge.cli.main import main

if __name__ == "__main__":  # pragma: no cover
    main()
