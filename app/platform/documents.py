"""PF-11 document storage behind one small interface (a local directory by default)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.platform import repository

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class FileRemovals:
    removed: int
    failed: int


async def remove_deleted_files(
    session: AsyncSession, storage: DocumentStorage, *, limit: int = 500
) -> FileRemovals:
    """Remove from the store the files of the org's deleted documents (queued by the
    database when their rows were deleted, sql/190), up to `limit`, in the caller's
    transaction: a file removed is forgotten when that transaction commits; one the store
    refused stays queued, its attempt counted, for the next run. Removing twice is
    harmless (a missing file is removed already)."""
    keys = await repository.claim_file_removals(session, limit)
    if not keys:
        return FileRemovals(0, 0)

    def remove_all() -> set[str]:
        failed = set()
        for key in keys:
            try:
                storage.delete(key)
            except (OSError, ValueError):
                failed.add(key)
        return failed

    failed = await asyncio.to_thread(remove_all)
    removed = [key for key in keys if key not in failed]
    if removed:
        await repository.forget_file_removals(session, removed)
    if failed:
        await repository.note_failed_file_removals(session, sorted(failed))
        logger.warning("deleted documents' files not removed", extra={"count": len(failed)})
    return FileRemovals(len(removed), len(failed))
