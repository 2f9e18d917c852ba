"""Real files to check, made with the same libraries applicants' tools use."""

from __future__ import annotations

import hashlib
import io

from PIL import Image
from pypdf import PdfWriter


def pdf_bytes(pages: int = 1) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def encrypted_pdf_bytes() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.encrypt("secret", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def image_bytes(image_format: str, size: tuple[int, int] = (32, 24)) -> bytes:
    image = Image.new("RGB", size, (200, 30, 90))
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def png_bytes(size: tuple[int, int] = (32, 24)) -> bytes:
    return image_bytes("PNG", size)


def jpeg_bytes(size: tuple[int, int] = (32, 24)) -> bytes:
    return image_bytes("JPEG", size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
