"""Provider clients, one per upstream, shared by every model that upstream serves.

A client is keyed by what it connects to (its provider, base URL, key and model folder), never by
the model's name: names routed by a rule are the caller's own text, so a client per name would let
callers open any number of connections. What a key can hold is fixed by the model table, whatever
names come in; the model itself travels with each request.
"""

from __future__ import annotations

from aitasks.config import Settings
from aitasks.providers import Provider, make_provider
from aitasks.routing import ModelSpec

UpstreamKey = tuple[str, str | None, str | None, str | None, str | None, float]


def upstream_of(spec: ModelSpec) -> UpstreamKey:
    """What a client for `spec` connects to, as the table configures it (with its timeout, which
    the SDK clients hold)."""
    return (
        spec.served_by,
        spec.base_url,
        spec.base_url_env,
        spec.api_key_env,
        spec.model_path,
        spec.timeout_s,
    )


class ProviderPool:
    """The provider clients of one process, made on first use and closed together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[UpstreamKey, Provider] = {}

    def get(self, spec: ModelSpec) -> Provider:
        key = upstream_of(spec)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = make_provider(spec, self.settings)
        return client

    def __len__(self) -> int:
        return len(self._clients)

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
