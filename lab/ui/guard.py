"""Who may use the live page: it can start and heal faults, so it must not be reachable by any
other web page the user has open.

- It binds 127.0.0.1 only (lab/ui/server.py).
- Every request's Host must be the page's own address: a DNS-rebinding page reaches 127.0.0.1
  under its own name, and is refused.
- Every API request carries the lab's token in `X-Halab-Token` (kept in the lab's state
  directory, readable by its owner only). A custom header cannot be sent cross-origin without a
  CORS preflight, which the server never answers; the token itself travels in the URL's
  fragment, which the browser never sends, so it is in no server log or Referer.
- A request that changes anything must come from the page itself: its Origin, when the browser
  sends one, must be the page's, and a POST without one is refused.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

TOKEN_FILE = "ui-token"
TOKEN_HEADER = "X-Halab-Token"
LOCAL_NAMES = ("127.0.0.1", "localhost")


def token(lab_dir: Path) -> str:
    """The lab's token, made on first use (owner-only file)."""
    path = lab_dir / TOKEN_FILE
    try:
        found = path.read_text().strip()
    except FileNotFoundError:
        found = ""
    if found:
        return found
    lab_dir.mkdir(parents=True, exist_ok=True)
    made = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(made + "\n")
    return made


def refusal(method: str, path: str, headers: Mapping[str, str], port: int, secret: str) -> tuple[int, str] | None:
    """(HTTP status, why) when the request must be refused, else None. `headers` by lower-case name."""
    own = {f"{name}:{port}" for name in LOCAL_NAMES}
    if headers.get("host", "") not in own:
        return 421, f"Host {headers.get('host', '')!r} is not this page's (open http://127.0.0.1:{port}/)"
    origin = headers.get("origin")
    if origin is not None and origin not in {f"http://{o}" for o in own}:
        return 403, f"Origin {origin!r} is not this page's"
    if method == "POST" and origin is None:
        return 403, "a change needs the page's Origin"
    if path.startswith("/api/") and not hmac.compare_digest(
        headers.get(TOKEN_HEADER.lower(), "").encode(), secret.encode()
    ):
        return 401, f"missing or wrong {TOKEN_HEADER}: open the address `halab ui` printed"
    return None
