"""Results keyed by what was evaluated: a readable prefix plus a short digest of the run's identity.

A run's identity is a JSON-able dict (digests of the weights, the probe and the data, and every setting
that changes a number). Its key is `{prefix}-{digest[:8]}`: the same identity always maps to the same key
(so a finished run is found and skipped, wherever the model directory was copied), and another identity
behind the same readable prefix gets a key of its own beside the old one (never a skip, never an overwrite).

    ident = {"model": digest_files(model_dir.glob("*.safetensors")), "policy": "c2f", "seed": 0}
    key = identity_key("final-c2f-s512-c32-seed0", ident)        # final-c2f-s512-c32-seed0-1a2b3c4d
    status = identity_status(root, "ade20k", "final-c2f-s512-c32-seed0", ident)   # done / todo / conflicting
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .store import list_runs, read_meta, sha256_file

DIGEST_CHARS = 8  # hex digits of the identity digest in a key (32 bits: a collision also needs the same prefix)


def digest_files(paths: Iterable[str | os.PathLike[str]]) -> str:
    """One hex sha256 over several files: each file's name and sha256, sorted by name (the folder they sit
    in does not count, so a copied or moved checkpoint keeps its digest)."""
    items = sorted((Path(p).name, sha256_file(p)) for p in paths)
    if not items:
        raise FileNotFoundError("no files to digest")
    return digest_json([[n, d] for n, d in items])


def digest_json(obj: Any) -> str:
    """The hex sha256 of `obj` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def identity_key(prefix: str, identity: Mapping[str, Any]) -> str:
    """`{prefix}-{first DIGEST_CHARS hex digits of digest_json(identity)}`."""
    return f"{prefix}-{digest_json(dict(identity))[:DIGEST_CHARS]}"


@dataclass(frozen=True)
class IdentityStatus:
    """Where a run of this identity stands in the store."""

    key: str  # the run's key (prefix + digest)
    digest: str  # the full identity digest
    status: str  # "done" (a complete run of this identity), "todo", or "conflicting" (see `others`)
    others: tuple[str, ...] = ()  # complete runs with the same prefix and another identity


def identity_record(identity: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """What a writer stores in the sidecar's `extra.identity`: the prefix, the full digest and the identity."""
    return {"prefix": prefix, "digest": digest_json(dict(identity)), "fields": dict(identity)}


def identity_status(root: str | os.PathLike[str] | None, kind: str, prefix: str,
                    identity: Mapping[str, Any]) -> IdentityStatus:
    """`done` when a complete run of this identity is stored, else `conflicting` when complete runs of the same
    prefix hold other identities (the new run goes beside them), else `todo`."""
    digest = digest_json(dict(identity))
    key = identity_key(prefix, identity)
    others = []
    for ref in list_runs(root, kind):
        if not ref.key.startswith(prefix + "-"):
            continue
        rec = ((read_meta(ref.meta_path) or {}).get("extra") or {}).get("identity") or {}
        if rec.get("prefix") != prefix:
            continue
        if ref.key == key and rec.get("digest") == digest:
            return IdentityStatus(key, digest, "done")
        others.append(ref.key)
    return IdentityStatus(key, digest, "conflicting" if others else "todo", tuple(others))
