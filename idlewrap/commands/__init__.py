"""The commands that never run during a session: one module each, ``main(argv) -> int``.

cli.py imports a command's module only when that command is run, so the wrapper's
start-up (every login) loads none of them.
"""
