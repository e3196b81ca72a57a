"""A real pyzmqrpc3 3.2.2 peer for zmqrpc's cross-language tests.

    peer.py serve ENDPOINT [USER PASSWORD]   a pyzmqrpc3 server; prints "ready", serves
                                            until its stdin closes
    peer.py call ENDPOINT [USER PASSWORD [N]] pyzmqrpc3 messages over a raw REQ socket
                                            (the first N); prints each JSON answer on a
                                            line of its own ({"timeout": true} after
                                            $PEER_TIMEOUT_MS, default 20000)
    peer.py subscribe ENDPOINT              a pyzmqrpc3 server taking commands from the
                                            publisher at ENDPOINT; prints "ready", then
                                            "served led <on> <level>" for each SetLed
    peer.py publish ENDPOINT N              binds PUB at ENDPOINT, publishes SetLed(True, i)
                                            for i < N, 50 ms apart; prints "published"
    peer.py calls ENDPOINT USER PASSWORD N  SetLed(True, i) for i < N over raw REQ ("-" for no
                                            credentials); prints each status code
    peer.py execute ENDPOINT USER PASSWORD  SetLed(True, 3) with ZmqRpcClient ("-" for no
                                            credentials); prints repr of what it returned
    peer.py agent ENDPOINT                  calls zmqrpc-server's Ping, Echo and GetNodeInfo
                                            with ZmqRpcClient; prints each response as JSON

The commands, with the services the server runs:
    SetLed(on, level) -> "led <on> <level>"     Fail(why) -> raises RuntimeError(why)
    Nothing() -> None                           Unknown() -> (no service anywhere)
"""
import json
import sys
import threading

import zmq
from zmqrpc.command import ICommand, json_zip
from zmqrpc.server import ZmqRpcServerThread
from zmqrpc.service import IService


class SetLed(ICommand):
    def __init__(self, on=False, level=0):
        self.on, self.level = on, level

    def set_command_state(self, state):
        self.on, self.level = state["on"], state["level"]

    def get_command_state(self):
        return {"on": self.on, "level": self.level}


class Fail(ICommand):
    def __init__(self, why=""):
        self.why = why

    def set_command_state(self, state):
        self.why = state["why"]

    def get_command_state(self):
        return {"why": self.why}


class Nothing(ICommand):
    def set_command_state(self, state):
        pass

    def get_command_state(self):
        return {}


class Unknown(ICommand):
    def set_command_state(self, state):
        pass

    def get_command_state(self):
        return {}


class Ping(ICommand):
    """every node's built-in `zmqrpc.node.ping`, as a pyzmqrpc3 user writes it."""

    def set_command_state(self, state):
        pass

    def get_command_state(self):
        return {}


class Stats(ICommand):
    """Every node's built-in `zmqrpc.node.stats`."""

    def set_command_state(self, state):
        pass

    def get_command_state(self):
        return {}


class Describe(ICommand):
    """Every node's built-in `zmqrpc.node.describe`."""

    def set_command_state(self, state):
        pass

    def get_command_state(self):
        return {}


class Echo(ICommand):
    """zmqrpc-server's `agent.echo`: its state is the text itself."""

    def __init__(self, text=""):
        self.text = text

    def set_command_state(self, state):
        self.text = state

    def get_command_state(self):
        return self.text


class GetNodeInfo(ICommand):
    def set_command_state(self, state):
        pass

    def get_command_state(self):
        return {}


class SetLedService(IService):
    def __call__(self, command):
        served = "led %s %s" % (command.on, command.level)
        print("served " + served, flush=True)
        return served


class FailService(IService):
    def __call__(self, command):
        raise RuntimeError(command.why)


class NothingService(IService):
    def __call__(self, command):
        return None


def serve(endpoint, user, password, subscribe=None):
    server = ZmqRpcServerThread(
        zmq_rep_bind_address=endpoint or None,
        zmq_sub_connect_addresses=(subscribe,) if subscribe else None,
        username=user,
        password=password,
    )
    server.register_service(SetLed, SetLedService())
    server.register_service(Fail, FailService())
    server.register_service(Nothing, NothingService())
    server.daemon = True
    server.start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop()


def call(endpoint, user, password, count=None):
    import os

    timeout = int(os.environ.get("PEER_TIMEOUT_MS", "20000"))
    ctx = zmq.Context()
    messages = [
        json_zip(SetLed(True, 7)),
        json_zip(Unknown()),
        json_zip(Fail("boom")),
        "garbage",
        "zmq_sub_heartbeat",
        json_zip(Nothing()),
        json_zip(SetLed(False, 1)),
    ]
    for message in messages[: int(count) if count else None]:
        socket = ctx.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVTIMEO, timeout)
        if user is not None:
            socket.plain_username = user.encode()
            socket.plain_password = password.encode()
        socket.connect(endpoint)
        socket.send_string(message)
        try:
            answer = json.loads(socket.recv_string())
        except zmq.error.Again:
            answer = {"timeout": True}
        print(json.dumps(answer), flush=True)
        socket.close()


def publish(endpoint, count):
    """Binds a PUB socket and publishes SetLed(True, i) for i in 0..count, one every 50 ms
    (a subscriber joining late misses the first few: pub/sub is not reliable)."""
    import time

    from zmqrpc.client import ZmqRpcClient

    client = ZmqRpcClient(zmq_pub_endpoint=endpoint)
    for i in range(int(count)):
        client.execute_remote(SetLed(True, i), time_out_in_sec=1)
        time.sleep(0.05)
    print("published", flush=True)
    sys.stdin.read()
    client.destroy()


def calls(endpoint, user, password, count):
    """SetLed(True, i) for i < count over raw REQ sockets; prints each status code."""
    ctx = zmq.Context()
    for i in range(int(count)):
        socket = ctx.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVTIMEO, 20000)
        if user is not None:
            socket.plain_username = user.encode()
            socket.plain_password = password.encode()
        socket.connect(endpoint)
        socket.send_string(json_zip(SetLed(True, i)))
        print(json.loads(socket.recv_string())["status_code"], flush=True)
        socket.close()


def execute(endpoint, user, password):
    """SetLed(True, 3) through pyzmqrpc3's own client; prints what execute_remote returned."""
    from zmqrpc.client import ZmqRpcClient

    client = ZmqRpcClient(
        zmq_req_endpoints=(endpoint,), username=user, password=password
    )
    print(repr(client.execute_remote(SetLed(True, 3), time_out_in_sec=20)), flush=True)
    client.destroy()


def agent(endpoint):
    from zmqrpc.client import ZmqRpcClient

    client = ZmqRpcClient(zmq_req_endpoints=(endpoint,))
    for command in (Ping(), Echo("hello from Python"), GetNodeInfo()):
        (response,) = client.execute_remote(command, time_out_in_sec=20)
        print(json.dumps(response), flush=True)
    client.destroy()


def node(endpoint):
    """Asks any node what it says about itself, as a pyzmqrpc3 user would."""
    from zmqrpc.client import ZmqRpcClient

    client = ZmqRpcClient(zmq_req_endpoints=(endpoint,))
    for command in (Ping(), Stats(), Describe()):
        (response,) = client.execute_remote(command, time_out_in_sec=20)
        print(json.dumps(response), flush=True)
    client.destroy()


if __name__ == "__main__":
    what, endpoint, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    if what == "agent":
        agent(endpoint)
    elif what == "node":
        node(endpoint)
    elif what == "publish":
        publish(endpoint, rest[0])
    elif what == "subscribe":
        serve(None, None, None, subscribe=endpoint)
    else:
        user, password = (rest[0], rest[1]) if len(rest) >= 2 else (None, None)
        if user == "-":
            user, password = None, None
        count = rest[2] if len(rest) >= 3 else None
        if what == "serve":
            serve(endpoint, user, password)
        elif what == "calls":
            calls(endpoint, user, password, count)
        elif what == "execute":
            execute(endpoint, user, password)
        else:
            call(endpoint, user, password, count)
