"""Per-process settings of the ingress middleware (API key digest, body limit).

They live in this module, read through ``sys.modules`` at request time, because Serve ships the
ingress class by value: module globals seen from its methods are copies, this module is not."""

from __future__ import annotations

from typing import Any

SETTINGS: dict[str, Any] = {"api_key_sha256": None, "max_body_bytes": 1_000_000}
