"""A pass-through in front of the local model that can be told to stall one reply mid-stream.

usage: model-faults.py UPSTREAM_BASE_URL [--port N]

Every request goes to UPSTREAM_BASE_URL (llama.cpp's OpenAI-compatible server) and its answer comes
back as it streams, untouched. A test that needs a reply still streaming when it acts (Stop in the
web app, a client's cancel) arms a fault first:

    POST /faults/stall {"when_prompt_contains": "<a word of that test's message>", "after_chars": 24}

The next chat completion whose last user message contains the word forwards the model's text
pieces until `after_chars` characters have gone through (or the model finishes first), then sends
nothing more — no finish, no usage, no [DONE] — and holds the connection open until the caller
closes it (as a stuck provider does), up to 120 s. Counted in characters, not pieces, because the
API streams a reply's text in whole segments (a word, at most 4 characters): a stall after two
pieces such as "1" and "." would leave the caller with no delta at all. Each armed
fault is used once; tests running at once each arm their own word. The model's own output is never
altered: this only decides when it stops arriving.

Prints `listening <url>` on stdout once it accepts connections. Loopback only, stdlib only.
"""

import argparse
import http.client
import json
import select
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOLD_SECS = 120
faults: list[dict] = []
faults_lock = threading.Lock()


def take_fault(body: bytes) -> dict | None:
    try:
        messages = json.loads(body).get("messages", [])
        last_user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    except (ValueError, AttributeError):
        return None
    with faults_lock:
        for fault in faults:
            if fault["when_prompt_contains"] in last_user:
                faults.remove(fault)
                return fault
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    upstream: urllib.parse.SplitResult

    def log_message(self, *_args) -> None:
        pass

    def do_GET(self) -> None:
        self.forward(b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/faults/stall":
            self.arm(body)
        else:
            self.forward(body)

    def arm(self, body: bytes) -> None:
        try:
            request = json.loads(body)
            fault = {"when_prompt_contains": str(request["when_prompt_contains"]), "after_chars": int(request.get("after_chars", 24))}
            if not fault["when_prompt_contains"] or fault["after_chars"] < 1:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            self.answer(400, {"error": "expected {when_prompt_contains: non-empty string, after_chars: >= 1}"})
            return
        with faults_lock:
            faults.append(fault)
        self.answer(200, {"armed": fault})

    def answer(self, status: int, value: dict) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def forward(self, body: bytes) -> None:
        fault = take_fault(body) if self.path.endswith("/chat/completions") else None
        upstream = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=300)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "content-length")}
        headers["Content-Length"] = str(len(body))
        try:
            upstream.request(self.command, self.upstream.path.rstrip("/") + self.path.removeprefix("/v1"), body or None, headers)
            response = upstream.getresponse()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("connection", "content-length", "transfer-encoding", "keep-alive"):
                    self.send_header(key, value)
            self.send_header("Connection", "close")
            self.end_headers()
            forwarded = 0
            # SSE arrives line by line; a close-delimited body carries it on unchanged.
            while line := response.readline():
                if fault and line.startswith(b"data: {"):
                    choices = json.loads(line[6:]).get("choices", [])
                    text = "".join(choice.get("delta", {}).get("content") or "" for choice in choices)
                    if (text and forwarded >= fault["after_chars"]) or any(choice.get("finish_reason") for choice in choices):
                        break
                    forwarded += len(text)
                self.wfile.write(line)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            upstream.close()
        if fault:
            self.hold()

    def hold(self) -> None:
        """Sends nothing until the caller hangs up (or HOLD_SECS pass)."""
        deadline = time.monotonic() + HOLD_SECS
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], left)
            try:
                if readable and not self.connection.recv(4096):
                    return
            except OSError:
                return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("upstream")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    Handler.upstream = urllib.parse.urlsplit(args.upstream)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
