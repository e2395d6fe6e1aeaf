"""`python3 -I -m idlewrap`: the entry point sshd's ForceCommand runs."""

from idlewrap.cli import main

raise SystemExit(main())
