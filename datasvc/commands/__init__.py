"""The ``datasvc`` subcommands, one module per group: each adds its parser and runs its actions.

`datasvc.cli` builds the top-level parser from them and maps what they raise to exit codes. A handler
takes the parsed arguments and the settings and returns the exit code.
"""
