"""Encryption at rest for app passwords and webhook secrets (Fernet, rotatable keys).

`AUTOPAY_SECRET_KEYS` holds one or more comma-separated Fernet keys: the first encrypts, all
decrypt, so a key can be rotated by prepending a new one and re-encrypting at leisure.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, MultiFernet


class SecretBox:
    def __init__(self, keys: str | list[str]) -> None:
        items = [k.strip() for k in (keys.split(",") if isinstance(keys, str) else keys)]
        items = [k for k in items if k]
        if not items:
            raise ValueError("at least one Fernet key is required (AUTOPAY_SECRET_KEYS)")
        self._fernets = [Fernet(k.encode()) for k in items]
        self._fernet = MultiFernet(self._fernets)

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()

    def rotate(self, token: str) -> str:
        """The same secret encrypted under the newest key (any configured key must open it)."""
        return self._fernet.rotate(token.encode()).decode()

    def is_current(self, token: str) -> bool:
        """Whether the newest key opens this token (then there is nothing to rotate)."""
        try:
            self._fernets[0].decrypt(token.encode())
        except Exception:
            return False
        return True
