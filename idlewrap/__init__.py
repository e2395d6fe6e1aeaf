"""idlewrap: end interactive sessions after a time without input from the user's terminal."""

__version__ = "0.1.0"
