"""`python3 -I -m idlewrap`: the entry point sshd's ForceCommand runs."""

from idlewrap.hardening import forbid_ptrace

forbid_ptrace()  # first: until this line any process of the user may ptrace this one

from idlewrap.cli import main  # noqa: E402

raise SystemExit(main())
