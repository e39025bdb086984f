"""Signed file links: a signature of any text is checked, never an error."""

import time

import pytest

from aitasks.links import FileSigner


@pytest.mark.parametrize("signature", ["é" * 64, "\udcff", "", "0" * 64])
def test_a_wrong_signature_is_refused_whatever_it_holds(signature: str) -> None:
    signer = FileSigner(b"secret", 3600)
    assert signer.verify("file", int(time.time()) + 60, signature) is False


def test_the_right_signature_passes_until_it_expires() -> None:
    signer = FileSigner(b"secret", 3600)
    expires = int(time.time()) + 60
    assert signer.verify("file", expires, signer._signature("file", expires))
    assert not signer.verify("file", int(time.time()) - 1, signer._signature("file", expires))
