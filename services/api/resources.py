"""What request handlers share, opened by the app's lifespan and closed at its end."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.api.applications.validation import UploadLimits
from services.api.auth.passwords import Passwords
from services.api.auth.revocation import TokenVersions
from services.api.auth.tokens import TokenVerifier
from services.api.pooling import pooled_connection
from services.api.settings import ApiSettings
from shared.blobs import BlobPublisher, BlobStore

if TYPE_CHECKING:  # the accept path imports this module
    from services.api.applications.accept import Intake


@dataclass(frozen=True)
class Resources:
    settings: ApiSettings
    pool: AsyncConnectionPool
    blobs: BlobStore
    blob_publisher: BlobPublisher
    passwords: Passwords
    tokens: TokenVerifier
    token_versions: TokenVersions
    intake: Intake

    def close(self) -> None:
        self.blob_publisher.close()

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """A pooled connection: 503 soon when the database is away, a wait when it is busy."""
        return pooled_connection(self.pool, self.settings.api_db_overload_wait_seconds)

    @property
    def outbox_schema(self) -> str:
        return self.settings.db_role

    @property
    def upload_limits(self) -> UploadLimits:
        return UploadLimits(
            max_files=self.settings.max_files,
            max_file_bytes=self.settings.max_file_bytes,
            max_body_bytes=self.settings.max_body_bytes,
            max_field_bytes=self.settings.max_field_bytes,
        )


# Dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a
# worker thread, a thread hop per dependency per request on the hot path.


async def resources(request: Request) -> Resources:
    """FastAPI dependency: the resources of the running app."""
    found: Resources = request.app.state.resources
    return found


async def request_id(request: Request) -> str:
    """The request's X-Request-ID (set by the middleware): every event it causes carries it."""
    return str(request.state.request_id)
