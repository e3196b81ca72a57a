"""pyzmqrpc3 on the cases it supports, measured like zmqrpc-bench measures zmqrpc.

Prints `case<TAB>value` lines: sequential REQ/REP RPC over tcp with a 32-byte payload
(calls/s, p50 and p99 in µs) and one-way PUB notify (delivered msgs/s, lost), plus the
process's peak RSS. Run by compare-pyzmqrpc3.sh in a throwaway virtualenv.
"""
import os
import socket
import sys
import threading
import time

from zmqrpc import ICommand, IService, ZmqRpcClient, ZmqRpcServerThread

SECONDS = float(os.environ.get("BENCH_SECONDS", "2"))


class Blob(ICommand):
    def __init__(self, data=None):
        super().__init__()
        self.data = data or ""

    def set_command_state(self, state):
        self.data = state["data"]

    def get_command_state(self):
        return {"data": self.data}


class Tick(ICommand):
    def __init__(self, n=None):
        super().__init__()
        self.n = n or 0

    def set_command_state(self, state):
        self.n = state["n"]

    def get_command_state(self):
        return {"n": self.n}


class Echo(IService):
    def __call__(self, command):
        return command.data


class Count(IService):
    def __init__(self):
        self.count = 0

    def __call__(self, command):
        self.count += 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sequential():
    port = free_port()
    server = ZmqRpcServerThread(zmq_rep_bind_address=f"tcp://127.0.0.1:{port}")
    server.register_service(command_class=Blob, service=Echo())
    server.start()
    client = ZmqRpcClient(zmq_req_endpoints=[f"tcp://127.0.0.1:{port}"])
    blob = Blob("x" * 32)
    for _ in range(200):
        client.execute_remote(command=blob, time_out_in_sec=5)
    latencies = []
    started = time.perf_counter()
    while time.perf_counter() - started < SECONDS:
        t = time.perf_counter()
        client.execute_remote(command=blob, time_out_in_sec=5)
        latencies.append(time.perf_counter() - t)
    rate = len(latencies) / (time.perf_counter() - started)
    latencies.sort()
    server.stop()
    server.join()
    return rate, latencies[len(latencies) // 2] * 1e6, latencies[len(latencies) * 99 // 100] * 1e6


def notify():
    port = free_port()
    count = Count()
    server = ZmqRpcServerThread(zmq_sub_connect_addresses=[f"tcp://127.0.0.1:{port}"])
    server.register_service(command_class=Tick, service=count)
    client = ZmqRpcClient(zmq_pub_endpoint=f"tcp://127.0.0.1:{port}")
    server.start()
    time.sleep(1.0)  # slow joiner
    sent = 0
    started = time.perf_counter()
    while time.perf_counter() - started < SECONDS:
        client.execute_remote(command=Tick(sent))
        sent += 1
    last, changed = count.count, time.perf_counter()
    while count.count < sent and time.perf_counter() - changed < 1.0:
        time.sleep(0.01)
        if count.count != last:
            last, changed = count.count, time.perf_counter()
    rate = count.count / (time.perf_counter() - started)
    server.stop()
    server.join()
    return rate, sent - count.count


def peak_rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    rate, p50, p99 = sequential()
    print(f"sequential\t{rate:.0f}\t{p50:.0f}\t{p99:.0f}", flush=True)
    rate, lost = notify()
    print(f"notify\t{rate:.0f}\t{lost}", flush=True)
    print(f"rss\t{peak_rss_kib()}", flush=True)
    sys.exit(0)
