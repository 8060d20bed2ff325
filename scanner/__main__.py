"""``python -m dfscan.scanner``: the dfscan CLI without the console script (used by bench)."""

from dfscan.scanner.cli import main

main()
