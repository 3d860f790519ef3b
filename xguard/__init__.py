"""xguard: a sudo-style gate between an AI agent and the shell."""

__version__ = "0.1.0"
