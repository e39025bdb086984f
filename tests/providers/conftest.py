"""The provider tests reuse the embedded app of the API tests."""

from tests.api.conftest import embedded

__all__ = ["embedded"]
