"""The verifier's settings (environment variable = field name upper-cased)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CoreSettings


class VerifierSettings(CoreSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")
    production_secrets: ClassVar[tuple[str, ...]] = ("verifier_db_password", "event_public_keys")

    blob_dir: Path = Path(".run/blobs")
    # A file whose checks run longer than this is rejected as "timed out".
    verify_timeout_seconds: float = Field(default=10.0, gt=0)
    # Worker processes for the checks; None: one per CPU.
    verify_processes: int | None = Field(default=None, ge=1)
    # Address-space cap per worker process, so a decompression bomb fails there, not here.
    verify_process_memory_mb: int = Field(default=1024, ge=128)
    verify_max_file_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    verify_max_pdf_pages: int = Field(default=500, gt=0)
    verify_max_image_pixels: int = Field(default=40_000_000, gt=0)
    # Extra wait per application, for benchmarks that need a slow verifier.
    verify_simulated_ms: int = Field(default=0, ge=0)
