"""claude-wrap: keeps Claude Code's OAuth login alive."""

__version__ = "0.1.0"
