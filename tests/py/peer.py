"""A real pyzmqrpc3 3.2.2 peer for zmqrpc's cross-language tests.

    peer.py serve ENDPOINT [USER PASSWORD]   a pyzmqrpc3 server; prints "ready", serves
                                            until its stdin closes
    peer.py call ENDPOINT [USER PASSWORD]    pyzmqrpc3 messages over a raw REQ socket; prints
                                            each JSON answer on a line of its own

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


class SetLedService(IService):
    def __call__(self, command):
        return "led %s %s" % (command.on, command.level)


class FailService(IService):
    def __call__(self, command):
        raise RuntimeError(command.why)


class NothingService(IService):
    def __call__(self, command):
        return None


def serve(endpoint, user, password):
    server = ZmqRpcServerThread(
        zmq_rep_bind_address=endpoint, username=user, password=password
    )
    server.register_service(SetLed, SetLedService())
    server.register_service(Fail, FailService())
    server.register_service(Nothing, NothingService())
    server.daemon = True
    server.start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop()


def call(endpoint, user, password):
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
    for message in messages:
        socket = ctx.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVTIMEO, 20000)
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


if __name__ == "__main__":
    what, endpoint = sys.argv[1], sys.argv[2]
    user, password = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else (None, None)
    {"serve": serve, "call": call}[what](endpoint, user, password)
