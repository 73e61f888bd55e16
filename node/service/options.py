"""Transport settings for both APIs, chosen on purpose rather than left to defaults.

- Keepalive: a client pings after 30 s without traffic and gives up after 10 s without an
  answer, so a dead peer (pulled cable, frozen VM) is noticed within ~40 s instead of the
  kernel's two hours. Servers accept pings every 10 s at most and tolerate idle pings.
- Message size: bounded both ways (``[limits] max_message_bytes``): an oversized request is
  refused with RESOURCE_EXHAUSTED before it is parsed.
- ``so_reuseport`` off: a second node on the same port must fail to start, not share it.
"""

from __future__ import annotations

KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000
MIN_PING_INTERVAL_MS = 10_000

Options = list[tuple[str, int | str]]


def server_options(max_message_bytes: int) -> Options:
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_ping_strikes", 2),
    ]


def channel_options(max_message_bytes: int) -> Options:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        # Reconnect quickly after a peer restarts, but do not hammer a dead one.
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 10_000),
    ]
