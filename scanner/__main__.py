"""``python -m dfscan.scanner``: the dfscan CLI without the console script (used by bench).

Guarded, so that importing the module (``pkgutil.walk_packages``, doc tools) runs nothing."""

from .cli.app import main

if __name__ == "__main__":
    main()
