"""Encrypted matching tables on disk: the node's own and the copies of its peers' tables.

A table lives in one directory: ``bins.dat`` holds every bin's ciphertext at a fixed width
(the layout's ``ciphertext_bytes``), in bin order, and ``header.json`` the signed header.
Changes write the bins in place, then replace the header atomically; a crash in between
leaves bins that do not match the signed digest, which :meth:`TableStore.check` detects
(the caller then fetches or rebuilds the whole table).
"""

from __future__ import annotations

import base64
import json
import mmap
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from federation.matching import MatchingError, TableHeader, table_digest

OWN_DIR = Path("matching") / "own"
"""Where a node keeps its own table, under its home directory."""
PEERS_DIR = Path("matching") / "peers"
"""Where it keeps its copies of the other cities' tables (one directory per city)."""
HEADER_FILE = "header.json"
BINS_FILE = "bins.dat"


class TableStore:
    """One table directory. Not thread-safe for writers; readers see whole ciphertexts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None
        self._width = 0

    def exists(self) -> bool:
        return (self.path / HEADER_FILE).is_file() and (self.path / BINS_FILE).is_file()

    def signed_header(self) -> tuple[bytes, bytes] | None:
        try:
            value = json.loads((self.path / HEADER_FILE).read_text())
        except FileNotFoundError:
            return None
        return base64.b64decode(value["header"]), base64.b64decode(value["signature"])

    def header(self) -> TableHeader | None:
        signed = self.signed_header()
        return TableHeader.from_bytes(signed[0]) if signed else None

    def create(self, header: bytes, signature: bytes, ciphertexts: Iterable[bytes]) -> None:
        """Write a whole table (replacing any other) and its header."""
        layout = TableHeader.from_bytes(header).layout
        self.close()
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.path / (BINS_FILE + ".new")
        count = 0
        with temporary.open("wb") as out:
            for ciphertext in ciphertexts:
                if len(ciphertext) != layout.ciphertext_bytes:
                    raise MatchingError("a table ciphertext has the wrong width")
                out.write(ciphertext)
                count += 1
            out.flush()
            os.fsync(out.fileno())
        if count != layout.bins:
            temporary.unlink()
            raise MatchingError(f"a table needs {layout.bins} bins, got {count}")
        temporary.replace(self.path / BINS_FILE)
        self._write_header(header, signature)

    def apply(self, header: bytes, signature: bytes, changes: Mapping[int, bytes]) -> None:
        """Overwrite the changed bins in place, then install the new header."""
        layout = TableHeader.from_bytes(header).layout
        width = layout.ciphertext_bytes
        self.close()
        with (self.path / BINS_FILE).open("r+b") as out:
            for bin_index, ciphertext in sorted(changes.items()):
                if not 0 <= bin_index < layout.bins or len(ciphertext) != width:
                    raise MatchingError("a table change names a bad bin or has the wrong width")
                out.seek(bin_index * width)
                out.write(ciphertext)
            out.flush()
            os.fsync(out.fileno())
        self._write_header(header, signature)

    def _write_header(self, header: bytes, signature: bytes) -> None:
        text = json.dumps(
            {
                "header": base64.b64encode(header).decode(),
                "signature": base64.b64encode(signature).decode(),
            }
        )
        temporary = self.path / (HEADER_FILE + ".new")
        temporary.write_text(text)
        temporary.replace(self.path / HEADER_FILE)

    def _mapped(self) -> tuple[mmap.mmap, int]:
        if self._map is None:
            header = self.header()
            if header is None:
                raise MatchingError(f"no matching table in {self.path}")
            with (self.path / BINS_FILE).open("rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            self._width = header.layout.ciphertext_bytes
        return self._map, self._width

    def ciphertext(self, bin_index: int) -> int:
        mapped, width = self._mapped()
        return int.from_bytes(mapped[bin_index * width : (bin_index + 1) * width], "big")

    def raw_bins(self) -> Iterator[bytes]:
        mapped, width = self._mapped()
        for start in range(0, len(mapped), width):
            yield mapped[start : start + width]

    def check(self) -> TableHeader:
        """The header, if the bins on disk match its signed digest; else :class:`MatchingError`."""
        header = self.header()
        if header is None:
            raise MatchingError(f"no matching table in {self.path}")
        if table_digest(self.raw_bins()) != header.digest:
            raise MatchingError(f"{header.describe()}: the bins on disk do not match the digest")
        return header

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
