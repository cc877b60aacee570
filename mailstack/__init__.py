"""mailstack: self-hosted email sending infrastructure as code."""

__version__ = "0.1.0"
