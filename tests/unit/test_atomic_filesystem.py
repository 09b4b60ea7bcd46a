"""The ``make run`` transport: a consumer never reads a half-written hint file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from queue import Empty
from typing import Any

from kombu import Connection
from kombu.transport import filesystem
from kombu.transport.virtual import Channel

from qstash_site.atomic_filesystem import Transport

QUEUE = "hints"
HINTS = 1000
# About 10 kB a hint: with kombu's own writer the reader below meets a file that
# exists but is not yet written in most runs (JSONDecodeError).
IDS = list(range(2_000))


def _channel(folder: Path, transport: Any) -> tuple[Connection, Channel]:
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    conn = Connection("filesystem://", transport=transport, transport_options=options)
    return conn, conn.default_channel  # type: ignore[return-value]


def _write_hints(folder: str) -> None:
    conn, channel = _channel(Path(folder), Transport)
    with conn:
        for n in range(HINTS):
            channel._put(QUEUE, {"n": n, "ids": IDS})  # type: ignore[attr-defined]


def test_a_reader_polling_during_many_writes_gets_every_hint_whole(tmp_path: Path) -> None:
    # The reader is kombu's own channel, which raises on a partial file (JSONDecodeError)
    # instead of skipping it: only the writer here is ours.
    conn, reader = _channel(tmp_path, filesystem.Transport)
    writer = multiprocessing.get_context("spawn").Process(
        target=_write_hints, args=(str(tmp_path),)
    )
    writer.start()
    got: list[int] = []
    try:
        while True:
            writer_done = writer.exitcode is not None
            try:
                hint = reader._get(QUEUE)  # type: ignore[attr-defined]
            except Empty:
                if writer_done:
                    break
                continue
            assert hint["ids"] == IDS
            got.append(hint["n"])
    finally:
        writer.join(60)
        conn.release()
    assert writer.exitcode == 0
    assert sorted(got) == list(range(HINTS))
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_an_unreadable_hint_file_is_dropped_and_the_next_one_read(tmp_path: Path) -> None:
    # What a writer that is not atomic (kombu's own) may leave: a file cut short.
    (tmp_path / f"0001_cut.{QUEUE}.msg").write_bytes(b'{"body": "eyJ')
    conn, channel = _channel(tmp_path, Transport)
    with conn:
        channel._put(QUEUE, {"n": 1})  # type: ignore[attr-defined]
        assert channel._get(QUEUE) == {"n": 1}  # type: ignore[attr-defined]
        assert list(tmp_path.iterdir()) == []
