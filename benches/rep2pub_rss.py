"""RSS of a rep2pub proxy with no subscriber after N requests of ~1 MiB (native frames).

Usage: python benches/rep2pub_rss.py PATH/TO/zmqrpc-proxy N  (needs pyzmq, e.g. the test venv).
"""
import struct, subprocess, sys, time, zmq
proxy, n = sys.argv[1], int(sys.argv[2])
inp, out = "ipc:///tmp/rss-rep2pub-in", "ipc:///tmp/rss-rep2pub-out"
p = subprocess.Popen([proxy, "--kind", "rep2pub", "--in", inp, "--out", out],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
time.sleep(1.0)
def status(key):
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith(key):
            return int(line.split()[1])
start_rss = status("VmRSS")
ctx = zmq.Context()
req = ctx.socket(zmq.REQ); req.setsockopt(zmq.LINGER, 0); req.setsockopt(zmq.RCVTIMEO, 10000)
req.connect(inp)
body = bytes((1 << 20) - 64 - 14)
kinds = {}
for seq in range(1, n + 1):
    req.send(bytes([1, 0]) + struct.pack("<I", seq) + struct.pack("<Q", 0x1234) + body)
    answer = req.recv()
    kinds[answer[1]] = kinds.get(answer[1], 0) + 1
time.sleep(0.5)
print(f"{n} requests of {len(body) + 14} B: answer kinds {kinds}; proxy VmRSS {start_rss} -> "
      f"{status('VmRSS')} KiB, peak VmHWM {status('VmHWM')} KiB")
p.kill()
