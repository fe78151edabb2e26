"""The DigitalOcean simulator's SSH keys: by id or fingerprint, one fingerprint once."""

from __future__ import annotations

from lab.sims.digitalocean.account import Account
from lab.sims.digitalocean.records import SshKey, not_found, unprocessable
from lab.sims.digitalocean.validation import fingerprint


class KeyOps(Account):
    """/v2/account/keys."""

    def list_keys(self) -> list[dict]:
        with self.lock:
            return [key.json() for key in self.keys.values()]

    def get_key(self, value: str) -> dict:
        with self.lock:
            return {"ssh_key": self.find_key(value, missing=not_found()).json()}

    def create_key(self, body: dict) -> dict:
        with self.lock:
            name, public_key = body.get("name"), body.get("public_key")
            if not isinstance(name, str) or not name.strip():
                raise unprocessable("Name can't be blank")
            if not isinstance(public_key, str):
                raise unprocessable("Public key can't be blank")
            print_ = fingerprint(public_key.strip())
            if self.find_key(print_) is not None:
                raise unprocessable("SSH Key is already in use on your account")
            key = SshKey(next(self.key_ids), name, public_key.strip(), print_)
            self.keys[key.id] = key
            return {"ssh_key": key.json()}

    def rename_key(self, value: str, body: dict) -> dict:
        with self.lock:
            key = self.find_key(value, missing=not_found())
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                raise unprocessable("Name can't be blank")
            key.name = name
            return {"ssh_key": key.json()}

    def delete_key(self, value: str) -> None:
        with self.lock:
            key = self.find_key(value, missing=not_found())
            del self.keys[key.id]
