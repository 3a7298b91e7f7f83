"""`Cmek`: a customer-managed encryption key named in a collection `Schema`, as chromadb 1.5
has it. huedb stores and echoes it; it encrypts nothing (a Chroma Cloud feature)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Cmek", "CmekProvider"]

_GCP_RESOURCE = re.compile(r"^projects/.+/locations/.+/keyRings/.+/cryptoKeys/.+$")


class CmekProvider(StrEnum):
    """Cloud providers whose key services a `Cmek` can name (only GCP, as in chromadb)."""

    GCP = "gcp"


@dataclass
class Cmek:
    """A key of a cloud key management service: its provider and resource name."""

    provider: CmekProvider
    resource: str

    @classmethod
    def gcp(cls, resource: str) -> Cmek:
        """A GCP Cloud KMS key (`projects/.../locations/.../keyRings/.../cryptoKeys/...`)."""
        return cls(provider=CmekProvider.GCP, resource=resource)

    def validate_pattern(self) -> bool:
        """Whether the resource name has the provider's format (the key is not looked up)."""
        return self.provider == CmekProvider.GCP and bool(_GCP_RESOURCE.match(self.resource))

    def to_dict(self) -> dict[str, Any]:
        """The wire form: `{"gcp": resource}`."""
        if self.provider == CmekProvider.GCP:
            return {"gcp": self.resource}
        raise ValueError(f"Unknown CMEK provider: {self.provider}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cmek:
        """A `Cmek` from its wire form; another provider or a non-string resource fails."""
        if "gcp" not in data:
            raise ValueError(f"Unsupported or missing CMEK provider in data: {data}")
        resource = data["gcp"]
        if not isinstance(resource, str):
            raise ValueError(f"CMEK gcp resource must be a string, got: {type(resource)}")
        return cls.gcp(resource)
