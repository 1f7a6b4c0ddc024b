"""canvit-results: the shared results store (tidy per-run tables + provenance) and its summaries.

    from canvit_results import write_run, load_runs, summarize, provenance
    write_run("results", "ade20k", "c2f-s512-c32-seed0", df, provenance(config=cfg, seed=0))
    summary = summarize(load_runs("results", "ade20k", with_meta=["extra.policy"]), ["extra.policy", "t"], ["miou"])
"""

from .atomic import atomic_dir, atomic_path, atomic_write_bytes, atomic_write_text
from .cli import dispatch
from .identity import IdentityStatus, digest_files, digest_json, identity_key, identity_record, identity_status
from .provenance import code_version, cpu_name, device_info, package_versions, provenance
from .store import (
    DEFAULT_ROOT,
    RunExistsError,
    RunRef,
    bootstrap_ci,
    is_complete,
    list_runs,
    load_meta,
    load_runs,
    read_meta,
    results_root,
    run_paths,
    sha256_file,
    summarize,
    write_run,
)

__all__ = [
    "IdentityStatus", "digest_files", "digest_json", "identity_key", "identity_record", "identity_status", "sha256_file",
    "DEFAULT_ROOT", "RunExistsError", "atomic_dir", "atomic_path", "atomic_write_bytes", "atomic_write_text", "dispatch", "RunRef", "bootstrap_ci", "code_version", "cpu_name", "device_info", "is_complete",
    "list_runs", "load_meta", "load_runs", "package_versions", "provenance", "read_meta", "results_root",
    "run_paths", "summarize", "write_run",
]
