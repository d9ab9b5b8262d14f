import os, socket, sys, time, threading, statistics

sys.path.insert(0, sys.argv[1])
import bytepump

ls = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(ls.getsockname())
server, _ = ls.accept()
with open("/tmp/eng/body", "wb") as f:
    f.write(os.urandom(4096))
rounds = []


def cl():
    for _ in range(20):
        t = time.monotonic()
        client.sendall(b"GET\n")
        got = 0
        while got < 4296:
            got += len(client.recv(65536))
        rounds.append(time.monotonic() - t)


th = threading.Thread(target=cl)
th.start()
f = open("/tmp/eng/body", "rb")
for _ in range(20):
    r = b""
    while not r.endswith(b"\n"):
        r += server.recv(4)
    server.sendall(b"H" * 200)
    f.seek(0)
    bytepump.splice_to(f, server)
th.join()
print(
    sys.argv[1],
    "median ms",
    round(statistics.median(rounds) * 1000, 2),
    "max",
    round(max(rounds) * 1000, 2),
)
