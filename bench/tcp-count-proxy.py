"""TCP proxy for the deploy benchmark: forwards 127.0.0.1:<listen> to
<host>:<target> (host: 127.0.0.1 unless given) and appends one line per closed
connection to <log>: "<bytes client->server> <bytes server->client> <turns>".

turns: how many times the client spoke again after the server had spoken,
i.e. the direction changes server->client -> client->server of the byte
stream as the proxy reads it (consecutive reads in one direction are one
turn): the request/reply exchanges on the connection, each of which costs a
round trip on a link with latency.

<delay_ms> (default 0) adds that many milliseconds to each direction (the
one-way delay of a WAN link; data keeps its order), and twice that before the
proxy connects onwards (the TCP handshake's round trip, which the client's
local connect to the proxy does not pay). The rate limit of such a link is
set on the target's veth pair with tc, not here. Runs until killed."""
import asyncio
import sys


async def pipe(reader, writer, counter, index, state, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        while data := await reader.read(65536):
            counter[index] += len(data)
            if index == 0 and state["last"] == 1:
                counter[2] += 1
            state["last"] = index
            if delay:
                queue.put_nowait((loop.time() + delay, data))
            else:
                writer.write(data)
                await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        queue.put_nowait((0, None))
        try:
            await sender
        except (ConnectionError, asyncio.CancelledError):
            pass
        try:
            writer.close()
        except Exception:
            pass


async def main(listen_port, target_port, log_path, target_host, delay):
    async def handle(client_reader, client_writer):
        if delay:
            await asyncio.sleep(2 * delay)
        server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        counter = [0, 0, 0]
        state = {"last": None}
        await asyncio.gather(
            pipe(client_reader, server_writer, counter, 0, state, delay),
            pipe(server_reader, client_writer, counter, 1, state, delay),
        )
        with open(log_path, "a") as log:
            log.write(f"{counter[0]} {counter[1]} {counter[2]}\n")

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]),
            int(sys.argv[2]),
            sys.argv[3],
            sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1",
            (int(sys.argv[5]) if len(sys.argv) > 5 else 0) / 1000,
        )
    )
