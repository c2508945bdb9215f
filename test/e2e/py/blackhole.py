"""A TCP port that never answers: listening with a backlog of 0 and never
accepting; the queue is filled at once, so the kernel drops every further
SYN and a client's connect() hangs until its own timeout — what a firewall
that drops packets (a provider blocking port 25) looks like to a client.
Usage: blackhole.py ADDRESS PORT; prints "ready" and waits to be killed."""
import socket
import sys
import time

address, port = sys.argv[1], int(sys.argv[2])
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((address, port))
server.listen(0)
fillers = []
for _ in range(3):
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.setblocking(False)
    try:
        c.connect((address, port))
    except BlockingIOError:
        pass
    fillers.append(c)
time.sleep(0.3)
print("ready", flush=True)
while True:
    time.sleep(60)
