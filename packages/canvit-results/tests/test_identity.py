"""canvit_results.identity: digests that follow the content (not the folder), keys = readable prefix + digest,
and the store's answer for an identity: done / todo / conflicting."""

import hashlib

import pandas as pd
import pytest
from canvit_results import (
    digest_files,
    digest_json,
    identity_key,
    identity_record,
    identity_status,
    provenance,
    sha256_file,
    write_run,
)


def test_digests_follow_the_bytes_not_the_folder(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "model.safetensors").write_bytes(b"weights")
    assert sha256_file(tmp_path / "a" / "model.safetensors") == hashlib.sha256(b"weights").hexdigest()
    assert digest_files([tmp_path / "a" / "model.safetensors"]) == digest_files([tmp_path / "b" / "model.safetensors"])
    (tmp_path / "b" / "model.safetensors").write_bytes(b"weightz")
    assert digest_files([tmp_path / "a" / "model.safetensors"]) != digest_files([tmp_path / "b" / "model.safetensors"])
    with pytest.raises(FileNotFoundError):
        digest_files([])
    assert digest_json({"a": 1, "b": [1, 2]}) == digest_json({"b": [1, 2], "a": 1})  # key order does not count


def test_identity_key_and_status(tmp_path):
    a, b = {"model": "1" * 64, "glimpses": 21}, {"model": "2" * 64, "glimpses": 21}
    ka, kb = identity_key("final-c2f-s512-c32-seed0", a), identity_key("final-c2f-s512-c32-seed0", b)
    assert ka.startswith("final-c2f-s512-c32-seed0-") and len(ka.rsplit("-", 1)[1]) == 8 and ka != kb
    assert identity_key("final-c2f-s512-c32-seed0", dict(a)) == ka
    assert identity_status(tmp_path, "in1k", "final-c2f-s512-c32-seed0", a).status == "todo"
    write_run(tmp_path, "in1k", ka, pd.DataFrame({"t": [0], "top1": [0.5]}), provenance(config={}),
              extra={"identity": identity_record(a, "final-c2f-s512-c32-seed0")})
    st = identity_status(tmp_path, "in1k", "final-c2f-s512-c32-seed0", a)
    assert (st.status, st.key, st.digest) == ("done", ka, digest_json(a))
    st = identity_status(tmp_path, "in1k", "final-c2f-s512-c32-seed0", b)
    assert (st.status, st.key, st.others) == ("conflicting", kb, (ka,))
    # a longer prefix that starts the same is not the same prefix
    assert identity_status(tmp_path, "in1k", "final-c2f-s512-c32-seed0-limit8", a).status == "todo"
