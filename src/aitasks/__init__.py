"""aitasks: an asynchronous AI task service."""

__version__ = "0.1.0"
