"""The commands that never run during a session: one module each, ``main(argv) -> int``.

Each builds its command line in ``parser()``, which its ``main`` uses and
idlewrap.manpages documents. cli.py imports a command's module only when that command
is run, so the wrapper's start-up (every login) loads none of them. ``switch.py`` is no
command: it holds what ``enable`` writes and ``disable`` takes back.
"""
