"""A fast keep-alive HTTP/1.1 receiver for benchmarks: answers 204 to every request and counts
them. It is a bare asyncio protocol (no framework, no header parsing beyond Content-Length), so
one process answers several times faster than the sender it measures; `bench.callbacks`
measures its ceiling with wrk first and prints it beside the delivery rate.

Run as its own process, so it does not share the sender's GIL:
`python -m bench.receiver PORT` from the repository root.
"""

from __future__ import annotations

import asyncio
import sys

ANSWER = b"HTTP/1.1 204 No Content\r\n\r\n"
HEAD_END = b"\r\n\r\n"


class Receiver(asyncio.Protocol):
    """One connection: split the byte stream into requests, answer each with 204."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answers = 0
        while (end := self.buffer.find(HEAD_END)) >= 0:
            size = _content_length(self.buffer[:end])
            whole = end + len(HEAD_END) + size
            if len(self.buffer) < whole:
                break  # the body is still on its way
            self.buffer = self.buffer[whole:]
            answers += 1
        if answers:
            self.transport.write(ANSWER * answers)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Receiver, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
