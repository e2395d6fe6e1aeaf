"""A program for the relay tests: raw mode, and every byte it reads goes to a file.

    python tests/tty_recorder.py FILE

It prints one READY line, then appends everything it reads from its terminal to FILE,
so a test sees exactly what reached the program (and nothing the wrapper swallowed).
"""

import os
import sys
import tty

with open(sys.argv[1], "ab", buffering=0) as record:
    tty.setraw(0)
    os.write(1, b"RECORDER-READY\r\n")
    while data := os.read(0, 65536):
        record.write(data)
