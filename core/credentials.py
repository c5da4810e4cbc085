"""Device credentials derived from one site secret, so no device password is stored in the repo.

A device's MQTT username is its id; its password is ``base64url(HMAC-SHA256(secret, site/id))``
truncated to 32 characters (192 bits). The broker's password file is generated from the same
derivation (:mod:`pipesentinel.ingest.mosquitto_auth`), and so are the simulators' logins.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

PASSWORD_LENGTH_CHARS = 32  # 32 base64 characters = 192 bits, above NIST SP 800-63B's 112


def device_password(*, secret: str, site_id: str, device_id: str) -> str:
    """The MQTT password of ``device_id`` on ``site_id``, derived from ``secret``."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{site_id}/{device_id}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:PASSWORD_LENGTH_CHARS]
