"""Decompression bombs: data that expands beyond the announced size is refused without allocating it."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import lz4.frame
import pytest
import zstandard

from splittracer.errors import WireError
from splittracer.wire.codecs import get_codec
from splittracer.wire.envelope import Envelope, arrived

EXPANDED = 64 << 20  # what the bomb expands to
ANNOUNCED = 4096  # what its sender claims
PEAK_LIMIT = 1 << 20  # memory decompression may take while refusing it

ZEROS = bytes(EXPANDED)
BOMBS: dict[str, Callable[[], bytes]] = {
    # the size in the frame header: refused before decompressing
    "lz4-declared": lambda: lz4.frame.compress(ZEROS, store_size=True),
    "zstd-declared": lambda: zstandard.ZstdCompressor(write_content_size=True).compress(ZEROS),
    # no size in the header: decompression stops one byte past the announced size
    "lz4-undeclared": lambda: lz4.frame.compress(ZEROS, store_size=False),
    "zstd-undeclared": lambda: zstandard.ZstdCompressor(write_content_size=False).compress(ZEROS),
}


def _peak_while(call: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(WireError, match="announced"):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_a_bomb_is_refused_without_allocating_what_it_expands_to(bomb: str) -> None:
    data = BOMBS[bomb]()
    assert len(data) < EXPANDED // 100  # a bomb: small on the wire
    codec = get_codec(bomb.partition("-")[0])
    peak = _peak_while(lambda: codec.decompress(data, ANNOUNCED))
    assert peak < PEAK_LIMIT, f"{peak} bytes allocated to refuse it"
    assert codec.decompress(data, EXPANDED) == ZEROS  # the limit refuses only what exceeds it


@pytest.mark.parametrize("name", ["lz4", "zstd"])
def test_an_envelope_announcing_less_than_its_buffer_expands_to_is_refused(name: str) -> None:
    data = BOMBS[f"{name}-undeclared"]()
    envelope = Envelope(
        sender="peer",
        sender_stage=0,
        sent_ns=0,
        task_header=b"",
        codec=name,
        raw_sizes=[ANNOUNCED],
        wire_sizes=[len(data)],
    )
    peak = _peak_while(lambda: arrived(envelope, [bytearray(data)], 0, 0, "socket"))
    assert peak < PEAK_LIMIT + len(data) * 2


def test_an_envelope_whose_sizes_do_not_match_its_buffers_is_refused() -> None:
    envelope = Envelope(sender="peer", sender_stage=0, sent_ns=0, task_header=b"", raw_sizes=[1, 2])
    with pytest.raises(WireError, match="announces 2 buffers, 1 came"):
        arrived(envelope, [bytearray(1)], 0, 0, "socket")


def test_blosc2_refuses_a_declared_size_beyond_the_announced_one() -> None:
    codec = get_codec("blosc2")
    data = codec.compress(bytes(1 << 20))
    with pytest.raises(WireError, match="would expand to 1048576 bytes"):
        codec.decompress(data, ANNOUNCED)
