"""TCP proxy for the deploy benchmark: forwards 127.0.0.1:<listen> to
<host>:<target> (host: 127.0.0.1 unless given) and appends one line per closed
connection to <log>: "<bytes client->server> <bytes server->client>". Runs
until killed."""
import asyncio
import sys


async def pipe(reader, writer, counter, index):
    try:
        while data := await reader.read(65536):
            counter[index] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main(listen_port, target_port, log_path, target_host):
    async def handle(client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        counter = [0, 0]
        await asyncio.gather(
            pipe(client_reader, server_writer, counter, 0),
            pipe(server_reader, client_writer, counter, 1),
        )
        with open(log_path, "a") as log:
            log.write(f"{counter[0]} {counter[1]}\n")

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"))
