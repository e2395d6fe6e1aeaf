"""`idlewrap audit`: what ends each account's idle sessions, and could the user escape it.

Facts come from the running system (sshd: `sshd -T` per account; pam_stack; launch: how
idlewrap starts; classic: TMOUT, logind, tmux); account and host turn them into checks
with the stable ids of findings; report renders them. The command is
idlewrap.commands.audit; docs/audit.md describes every check.
"""
