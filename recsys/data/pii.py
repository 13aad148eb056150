"""PII: detection (emails, phones, card numbers, person names in free text) and salted keyed hashing.

The salt comes from the environment (``RECSYS_PII_SALT`` by default, e.g. mounted from a secret);
it is never read from config files and never written anywhere. Hashes are HMAC-SHA256, so the
same value maps to the same token within one salt (joins keep working) and cannot be reversed or
brute-forced without the salt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

import pyarrow as pa
import pyarrow.compute as pc

EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
PHONE = r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}\b"
CARD = r"\b(?:\d[ -]?){13,19}\b"
# A person's name introduced in free text, or a common first name followed by a capitalized word.
FIRST_NAMES = (
    "james|john|robert|michael|william|david|richard|joseph|thomas|charles|mary|patricia|"
    "jennifer|linda|elizabeth|barbara|susan|jessica|sarah|karen|emma|olivia|anna|maria|"
    "peter|paul|mark|laura|julia|lucas|noah|liam|sophie|alice|daniel|george|oliver|jack"
)
NAME = (
    r"(?:(?i:my name is|i am|this is|contact|ask for)\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?"
    rf"|\b(?i:{FIRST_NAMES})\s+[A-Z][a-z]{{2,}})"
)
PATTERNS = {"email": EMAIL, "phone": PHONE, "card": CARD, "name": NAME}


def salt_from_env(var: str = "RECSYS_PII_SALT", required: bool = True) -> str | None:
    salt = os.environ.get(var)
    if required and not salt:
        raise RuntimeError(
            f"PII hashing needs a secret salt in the environment variable {var} (never in a config file): "
            f"export {var}=$(openssl rand -hex 32), or mount it from your secret store"
        )
    return salt


def keyed_hash(value: str, salt: str, n: int = 16) -> str:
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()[:n]


def hash_array(arr: pa.Array, salt: str) -> pa.Array:
    """HMAC every non-null value (dictionary-encoded first: each distinct value hashed once)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    enc = pc.dictionary_encode(arr)
    hashed = pa.array(
        [keyed_hash(v, salt) if v is not None else None for v in enc.dictionary.to_pylist()], pa.string()
    )
    return pc.take(hashed, enc.indices)


def scrub_text(arr: pa.Array, salt: str | None) -> pa.Array:
    """Replace emails, phones, cards and names in free text by ``<kind:hash>`` (``<kind>`` without salt)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    hit = None
    for pat in PATTERNS.values():
        m = pc.fill_null(pc.match_substring_regex(arr, pat), False)
        hit = m if hit is None else pc.or_(hit, m)
    if hit is None or not pc.any(hit).as_py():
        return arr
    idx = pc.indices_nonzero(hit)
    fixed = [_scrub_one(v, salt) for v in pc.take(arr, idx).to_pylist()]
    out = arr.to_pylist()
    for i, v in zip(idx.to_pylist(), fixed):
        out[i] = v
    return pa.array(out, pa.string())


def _scrub_one(text: str, salt: str | None) -> str:
    for kind in ("email", "card", "phone", "name"):

        def token(m: re.Match[str], k: str = kind) -> str:
            return f"<{k}:{keyed_hash(m.group(0), salt, 8)}>" if salt else f"<{k}>"

        text = re.sub(PATTERNS[kind], token, text)
    return text
