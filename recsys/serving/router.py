"""Sticky A/B assignment: a salted hash of the user id picks the arm by configured weights, so a
user sees the same arm on every request and replica, and changing the salt re-randomises."""

from __future__ import annotations

import hashlib
import uuid


class ABRouter:
    BUCKETS = 10_000

    def __init__(self, weights: dict[str, float], salt: str):
        total = sum(weights.values())
        if total <= 0:
            raise ValueError("at least one arm needs weight > 0")
        self.arms = list(weights)
        self.weights = {a: w / total for a, w in weights.items()}
        self.salt = salt
        edges, acc = [], 0.0
        for name in self.arms:
            acc += weights[name] / total
            edges.append(round(acc * self.BUCKETS))
        edges[-1] = self.BUCKETS
        self.edges = edges

    def bucket(self, key: str) -> int:
        digest = hashlib.sha256(f"{self.salt}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.BUCKETS

    def assign(self, user_id: str | None) -> str:
        """The user's arm; anonymous requests get a random (non-sticky) arm."""
        b = self.bucket(user_id if user_id else uuid.uuid4().hex)
        for name, edge in zip(self.arms, self.edges):
            if b < edge:
                return name
        return self.arms[-1]
