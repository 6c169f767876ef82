"""Storing a generated image: PNG with its provenance in text chunks, content hash, URI.

Files are written 0640 in 0750 directories (never world-writable) and appear atomically
(written under a temporary name, then renamed), so a reader never sees half an image.
An S3-compatible store is optional: boto3 is imported only when `--results-s3` is used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

FILE_MODE = 0o640
DIR_MODE = 0o750


@dataclass(frozen=True, slots=True)
class StoredImage:
    uri: str
    sha256: str
    size_bytes: int


def encode_png(image: np.ndarray, metadata: dict[str, Any]) -> bytes:
    """`image` HxWx3 floats in [0, 1]; every metadata value is stored as a tEXt chunk (JSON if not str)."""
    pixels = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(key, value if isinstance(value, str) else json.dumps(value, sort_keys=True))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


class ResultStore(Protocol):
    def put(self, key: str, data: bytes) -> StoredImage: ...


class DirectoryStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)

    def put(self, key: str, data: bytes) -> StoredImage:
        parts = Path(key).parts
        if not parts or any(part in ("", ".", "..") or part.startswith("/") for part in parts):
            raise ValueError(f"result key {key!r} must be a relative path without '..'")
        directory = self.root
        for part in parts[:-1]:
            directory = directory / part
            directory.mkdir(mode=DIR_MODE, exist_ok=True)
        target = directory / parts[-1]
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)
        return StoredImage(target.as_uri(), hashlib.sha256(data).hexdigest(), len(data))


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        import boto3  # optional dependency: only S3 users need it

        self.client = boto3.client("s3", endpoint_url=endpoint_url)
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def put(self, key: str, data: bytes) -> StoredImage:
        full_key = f"{self.prefix}/{key}" if self.prefix else key
        self.client.put_object(Bucket=self.bucket, Key=full_key, Body=data, ContentType="image/png")
        return StoredImage(f"s3://{self.bucket}/{full_key}", hashlib.sha256(data).hexdigest(), len(data))


def result_key(namespace: str, name: str, attempt: int) -> str:
    return f"{namespace or 'default'}/{name}-attempt{attempt}.png"
