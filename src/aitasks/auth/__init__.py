"""Who is calling: API keys, the tenant they act for, and the limits they carry."""

from aitasks.auth.caller import LOCAL_TENANT, Caller, KeyInfo

__all__ = ["LOCAL_TENANT", "Caller", "KeyInfo"]
