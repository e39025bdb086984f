"""Keys and tenants: a missing or wrong key is a 401; another tenant's conversations, tasks, files
and webhooks are 404 on every endpoint, and lists show one's own only."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest

from tests.support.deployment import Deployment, Key
from tests.support.flows import conversation_with_history_and_an_image, submit, wait_for_tasks
from tests.support.processes import run_cli
from tests.support.services import query

CHAT = "/v1/chat/completions"
OPENAI_CHAT = "/openai/v1/chat/completions"
ASK = {"prompt": "continue", "model": "mock-chat"}
OPENAI_ASK = {"model": "mock-chat", "messages": [{"role": "user", "content": "continue"}]}


@pytest.fixture(scope="module")
def alice(deployment: Deployment) -> Key:
    return deployment.create_key("alice")


@pytest.fixture(scope="module")
def bob(deployment: Deployment) -> Key:
    return deployment.create_key("bob")


def test_a_key_is_shown_once_and_only_its_hash_is_kept(deployment: Deployment) -> None:
    key = deployment.create_key("carol", "--rpm", "100")
    assert key.secret.startswith("ait_") and key.webhook_secret.startswith("whsec_")
    listed = run_cli(["keys", "list"], deployment.env, deployment.folder)
    assert "carol" in listed.stdout and "rpm=100" in listed.stdout
    assert key.secret not in listed.stdout and key.secret.split("_")[2] not in listed.stdout
    rows = query(deployment.database_url, "SELECT * FROM api_keys WHERE name = 'carol'")
    assert rows and all(key.secret not in str(value) for value in rows[0])
    again = run_cli(["keys", "create", "--name", "carol"], deployment.env, deployment.folder)
    assert again.returncode != 0 and "exists already" in again.stderr


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer nonsense", "Basic YWxpY2U6c2VjcmV0", "Bearer ait_0123456789abcdef_"
     + "x" * 43],
)  # fmt: skip
def test_no_valid_key_is_a_401_in_the_api_error_shape(
    deployment: Deployment, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=deployment.gateways[0], headers=headers, timeout=10) as client:
        for method, path in [
            ("GET", "/v1/tasks"),
            ("POST", "/v1/chat/completions"),
            ("GET", "/v1/models"),
            ("GET", "/v1/status"),
            ("GET", "/v1/files/0123"),
        ]:
            answer = client.request(method, path, json={"prompt": "hi", "model": "mock-chat"})
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json()["error"]["type"] == "unauthorized"
            assert answer.headers["www-authenticate"] == "Bearer"
        openai = client.get("/openai/v1/models")
        assert openai.status_code == 401
        assert openai.json()["error"]["type"] == "authentication_error"
        # Health stays open, for load balancers.
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_a_revoked_key_stops_working(deployment: Deployment) -> None:
    key = deployment.create_key("dave")
    with deployment.client(key) as client:
        assert client.get("/v1/tasks").status_code == 200
        revoked = run_cli(["keys", "revoke", "dave"], deployment.env, deployment.folder)
        assert revoked.returncode == 0, revoked.stderr
        time.sleep(0.6)  # the gateway's key cache (AITASKS_KEY_CACHE_SECONDS)
        assert client.get("/v1/tasks").status_code == 401


def unsigned(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=""))


def test_the_seed_flows_run_for_a_tenant(deployment: Deployment, alice: Key) -> None:
    with deployment.client(alice) as client:
        conversation_with_history_and_an_image(client)


def test_another_tenant_sees_nothing_of_it(deployment: Deployment, alice: Key, bob: Key) -> None:
    with deployment.client(alice) as mine, deployment.client(bob) as theirs:
        chat = submit(mine, "a secret of alice's")
        conversation = chat["conversation_id"]
        image = submit(mine, "a cat", conversation, path="/v1/images/generations",
                       model="stable-diffusion-3")  # fmt: skip
        done = wait_for_tasks(mine, [chat["task_id"], image["task_id"]])
        (image_url,) = done[image["task_id"]]["result"]
        file_path = urlsplit(image_url).path
        task = chat["task_id"]

        refused = [
            theirs.get(f"/v1/tasks/{task}"),
            theirs.get(f"/v1/tasks/{task}", headers={"Prefer": "wait=1"}),
            theirs.get(f"/v1/tasks/{task}/events"),
            theirs.get(f"/v1/tasks/{task}/webhooks"),
            theirs.post(f"/v1/tasks/{task}/cancel"),
            theirs.post(f"/v1/tasks/{task}/retry"),
            theirs.get(f"/v1/conversations/{conversation}"),
            theirs.get(f"/v1/conversations/{conversation}/history"),
            theirs.patch(f"/v1/conversations/{conversation}", json={"title": "mine now"}),
            theirs.delete(f"/v1/conversations/{conversation}"),
            theirs.post(CHAT, json={**ASK, "conversation_id": conversation}),
            theirs.get(file_path),
            theirs.post(OPENAI_CHAT, json={**OPENAI_ASK, "conversation_id": conversation}),
        ]
        for answer in refused:
            assert answer.status_code == 404, (answer.request.url, answer.text)
            assert "alice" not in answer.text
        assert task not in theirs.get("/v1/tasks").text
        assert conversation not in theirs.get("/v1/conversations").text
        assert task not in theirs.get("/v1/tasks?status=SUCCESS").text
        # Nothing of alice's changed, and bob's attempts wrote nothing.
        assert mine.get(f"/v1/conversations/{conversation}").json()["message_count"] == 4
        assert mine.get(f"/v1/tasks/{task}").json()["status"] == "SUCCESS"
        assert task in mine.get("/v1/tasks").text
        assert mine.get(file_path).status_code == 200


def test_file_links_are_signed_and_expire(deployment: Deployment, alice: Key) -> None:
    with deployment.client(alice) as mine:
        image = submit(mine, "a dog", path="/v1/images/generations", model="stable-diffusion-3")
        (url,) = wait_for_tasks(mine, [image["task_id"]])[image["task_id"]]["result"]
    signed = parse_qs(urlsplit(url).query)
    assert set(signed) == {"expires", "signature"}
    path = urlsplit(url).path
    with deployment.client(None) as anyone:
        assert anyone.get(url).status_code == 200  # an <img> tag needs no key
        assert anyone.get(path).status_code == 401
        forged = {"expires": signed["expires"][0], "signature": "0" * 64}
        assert anyone.get(path, params=forged).status_code == 401
        stale = {"expires": "1000", "signature": signed["signature"][0]}
        assert anyone.get(path, params=stale).status_code == 401


def test_idempotency_keys_are_per_tenant(deployment: Deployment, alice: Key, bob: Key) -> None:
    body = {"prompt": "once", "model": "mock-chat"}
    headers = {"Idempotency-Key": "same-key-for-both"}
    with deployment.client(alice) as mine, deployment.client(bob) as theirs:
        first = mine.post("/v1/chat/completions", json=body, headers=headers)
        other = theirs.post("/v1/chat/completions", json=body, headers=headers)
        again = mine.post("/v1/chat/completions", json=body, headers=headers)
    assert first.status_code == other.status_code == 202
    assert first.json()["task_id"] != other.json()["task_id"]
    assert again.status_code == 200 and again.json()["task_id"] == first.json()["task_id"]
