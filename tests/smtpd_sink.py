"""A tiny SMTP server on localhost that accepts every mail and keeps it (``smtpd`` is gone from Python
3.12; this is the few verbs ``smtplib`` speaks): real SMTP for the mail notifier's tests."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Sink:
    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[str] = []

    def wait_for_mail(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        return bool(self.messages)


def _handler(sink: Sink) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(f"{line}\r\n".encode())

        def handle(self) -> None:
            self.reply("220 sink ready")
            while line := self.rfile.readline():
                verb = line.decode(errors="replace").strip().split(" ", 1)[0].upper()
                if verb == "DATA":
                    self.reply("354 end with <CRLF>.<CRLF>")
                    body = []
                    while (data := self.rfile.readline()) not in (b".\r\n", b""):
                        body.append(data.decode(errors="replace"))
                    sink.messages.append("".join(body))
                    self.reply("250 queued")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:  # EHLO, HELO, MAIL, RCPT, RSET, NOOP
                    self.reply("250 ok")

    return Handler


@contextmanager
def running() -> Iterator[Sink]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _handler(Sink(0)))
    sink = Sink(server.server_address[1])
    server.RequestHandlerClass = _handler(sink)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
