"""PF-11 document storage behind one small interface (a local directory by default)."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Protocol

from app.config import Settings


class DocumentStorage(Protocol):
    def put(self, content: bytes) -> str: ...
    def get(self, storage_key: str) -> bytes: ...
    def delete(self, storage_key: str) -> None: ...


class LocalDocumentStorage:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def _path(self, storage_key: str) -> Path:
        # Keys are ours (uuid hex); refuse anything that could walk out of the root.
        if not storage_key.isalnum():
            raise ValueError("invalid storage key")
        return self.root / storage_key[:2] / storage_key

    def put(self, content: bytes) -> str:
        key = uuid.uuid4().hex
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(content)
        tmp.replace(path)
        return key

    def get(self, storage_key: str) -> bytes:
        return self._path(storage_key).read_bytes()

    def delete(self, storage_key: str) -> None:
        self._path(storage_key).unlink(missing_ok=True)


def document_storage(settings: Settings) -> DocumentStorage:
    root = settings.document_storage_dir or os.path.join(settings.data_dir, "documents")
    return LocalDocumentStorage(root)


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
