"""What the tests import: real services and processes, the embedded app, deployments, flows over
HTTP, the backends of each seam, and small servers (a webhook receiver, an SSE reader).

conftest.py files only declare fixtures, built from these; no test imports a conftest.
"""
