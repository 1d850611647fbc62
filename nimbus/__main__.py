"""``python -m nimbus``: the same CLI as the ``nimbus`` command."""

from nimbus.cli import main

if __name__ == "__main__":
    main()
