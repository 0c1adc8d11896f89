"""Sub-commands of `pos`. Each module has `register(subparsers)`; see pos/cli.py."""
