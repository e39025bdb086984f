"""Who is calling: API keys, the tenant they act for, and the limits they carry."""

from aitasks.auth.keys import Caller, KeyInfo

__all__ = ["Caller", "KeyInfo"]
