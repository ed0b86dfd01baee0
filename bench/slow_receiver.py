#!/usr/bin/env python3
"""slow_receiver.py — bench/fulfilment.sh's slow fulfilment service.

An HTTP/1.1 server (asyncio, keep-alive, standard library only) on
127.0.0.1 that answers every request with 200 and the body {} after a fixed
delay (50 ms by default), many connections at once: with C connections in
use it can answer C / delay requests a second, which is the ceiling the
bench compares orderd's fulfilment_url row with.

Usage: slow_receiver.py PORT [--delay SECONDS]
Prints "listening on 127.0.0.1:PORT" once it accepts connections; on SIGTERM
or SIGINT it prints "answered N" and exits 0.
"""
import argparse
import asyncio
import signal
import sys

REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
         b"Content-Length: 2\r\n\r\n{}")
REPLY_CLOSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
               b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
BAD = (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
       b"Connection: close\r\n\r\n")
MAX_HEAD = 64 * 1024

answered = 0


async def read_body(reader, headers):
    """Reads and discards the request body (Content-Length or chunked)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return
            await reader.readexactly(size + 2)
    length = int(headers.get("content-length", "0") or "0")
    if length > 0:
        await reader.readexactly(length)


async def serve(reader, writer, delay):
    global answered
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                writer.write(BAD)
                break
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                writer.write(BAD)
                break
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await read_body(reader, headers)
            close = (headers.get("connection", "").lower() == "close"
                     or parts[2] == "HTTP/1.0")
            await asyncio.sleep(delay)
            writer.write(REPLY_CLOSE if close else REPLY)
            await writer.drain()
            answered += 1
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    except asyncio.CancelledError:  # the server is stopping
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--delay", type=float, default=0.05)
    args = ap.parse_args()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(
        lambda r, w: serve(r, w, args.delay), "127.0.0.1", args.port,
        backlog=4096, limit=MAX_HEAD)
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    await stop.wait()
    server.close()  # open keep-alive connections end with the loop
    print(f"answered {answered}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
