"""``python -m xentcli`` is the ``xent`` command."""

from .cli import main

if __name__ == "__main__":
    main()
