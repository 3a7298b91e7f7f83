"""Base64 float32 embeddings (how the JS client sends them) refused with Chroma's messages,
beside Chroma 1.5.9's own server: a non-finite value names its index in the vector, a
byte length not divisible by 4 is named, invalid base64 says so."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests import side_by_side

API = "/api/v2/tenants/default_tenant/databases/default_database/collections"


servers = side_by_side.servers


def _encoded(*values: float) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


CASES = {
    "nan": [_encoded(1.0, float("nan"), 2.0)],
    "inf": [_encoded(float("inf"), 1.0, 2.0)],
    "minus inf": [_encoded(1.0, 2.0, float("-inf"))],
    "second record": [_encoded(1.0, 2.0, 3.0), _encoded(1.0, float("nan"), 3.0)],
    "five bytes": [base64.b64encode(b"\x00" * 5).decode()],
}


def _refusal(base: str, name: str, embeddings: list[str]) -> tuple[int, str, str]:
    made = httpx.post(f"{base}{API}", json={"name": name}, timeout=30)
    made.raise_for_status()
    ids = [f"r{i}" for i in range(len(embeddings))]
    answer = httpx.post(
        f"{base}{API}/{made.json()['id']}/add",
        json={"ids": ids, "embeddings": embeddings},
        timeout=30,
    )
    body = answer.json()
    return answer.status_code, body["error"], body["message"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_base64_embeddings_are_refused_as_chroma_refuses_them(
    servers: dict[str, str], case: str
) -> None:
    name = "b64-" + case.replace(" ", "-")
    ours = _refusal(servers["huedb"], name, CASES[case])
    theirs = _refusal(servers["chroma"], name, CASES[case])
    assert ours == theirs
    assert ours[0] == 400


def test_invalid_base64_is_named(servers: dict[str, str]) -> None:
    status, error, message = _refusal(servers["huedb"], "b64-invalid", ["!!!!"])
    theirs = _refusal(servers["chroma"], "b64-invalid", ["!!!!"])
    assert (status, error) == theirs[:2] == (400, "InvalidArgumentError")
    assert message.startswith("Invalid base64 string: ") and theirs[2].startswith(
        "Invalid base64 string: "
    )
