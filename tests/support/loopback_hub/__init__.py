"""A loopback Hugging Face Hub for tests.

`LoopbackHub` is an in-memory HTTP server (stdlib `ThreadingHTTPServer`, bound to 127.0.0.1 only) that speaks
the subset of the Hub HTTP API used by `huggingface_hub` 2.4, `datasets` 5.2 and `transformers` 5.x: repo
creation/settings/deletion, branches and tags, the preupload + NDJSON commit endpoints, the legacy LFS "basic"
transfer, repo info, tree/paths-info listings, commit history and `resolve` downloads (HEAD/GET, ranges).

Faults can be injected (`LoopbackHub.inject(Fault...)`): an HTTP error status (500, 503, 429 with `Retry-After`),
the connection dropped mid-upload (part of the body read, no answer), or an answer slower than the client's timeout
(the request is carried out, then the answer waits); `Fault.apply=True` on a dropped request carries it out first
(the commit lands, its answer is lost). Each fault hits the first `times` matching requests after `skip` of them.

Use the `loopback_hub` pytest fixture, which also points the already-imported libraries at the server (they
copy `HF_ENDPOINT` and friends into module constants at import time, so setting the environment is not enough).
See `patch_hf_environment` for the full list of what is patched.

The package is split by concern: `repository` (the repos, commits and blobs), `handlers` (the Hub's HTTP
endpoints), `server` (`LoopbackHub`, the faults and the raw HTTP server) and `patching` (the fixture).
"""

from tests.support.loopback_hub.patching import loopback_hub, patch_hf_environment
from tests.support.loopback_hub.repository import DEFAULT_LFS_PATTERNS, HubCommit, HubRepo
from tests.support.loopback_hub.server import Fault, LoopbackHub

__all__ = [
    "DEFAULT_LFS_PATTERNS",
    "Fault",
    "HubCommit",
    "HubRepo",
    "LoopbackHub",
    "loopback_hub",
    "patch_hf_environment",
]
