"""A peer written in another language (pyzmq + msgpack), exactly as protocol.md says.

Acts as a broker (DEALER connected to Peony's intake) and as the forwarder (ROUTER bound where
Peony's egress connects). Sends single tasks and a batch with 64-bit values, reads the replies and
pushes, checks every field, and prints one JSON line with the verdict. Run with /usr/bin/python3.
"""
import json
import sys
import time

import msgpack
import zmq

intake, forwarder = sys.argv[1], sys.argv[2]
ctx = zmq.Context()
fwd = ctx.socket(zmq.ROUTER)
fwd.bind(forwarder)
broker = ctx.socket(zmq.DEALER)
broker.connect(intake)

BIG = [
    dict(uid=2**40 + 1, conn_id=2**62 + 5, userdata=2**63 - 1, custom=-(2**40), ts=1764000000123, node_id=2**31 - 1, tag=-7, flags=3, sn=2**40),
    dict(uid=9007199254740993, conn_id=-(2**63), userdata=0, custom=2**53 + 1, ts=2**40, node_id=1, tag=0, flags=0, sn=1),
    dict(uid="玩家-1", conn_id=12345, userdata=2**32, custom=5, ts=0, node_id=42, tag=2**31 - 1, flags=65535, sn=7),
]


def task(f, i):
    body = msgpack.packb({"cmd": "fields", "sn": f["sn"], "data": {"i": i, "big": 2**62, "neg": -(2**62), "f": 1.5, "s": "é", "b": b"\x00\x01"}}, use_bin_type=True)
    return {"cmd": 10, "uid": f["uid"], "node_id": f["node_id"], "conn_id": f["conn_id"], "tag": f["tag"],
            "userdata": f["userdata"], "custom": f["custom"], "ts": f["ts"], "flags": f["flags"],
            "client_ip": "203.0.113.9", "body": body, "unknown_key": [1, 2, 3]}


# one task per message, then all in one batch (with a bad element in the middle, which must not
# affect the others), then an empty batch (a no-op)
for i, f in enumerate(BIG):
    broker.send(msgpack.packb(task(f, i), use_bin_type=True))
batch = [task(f, 10 + i) for i, f in enumerate(BIG)]
batch.insert(1, {"cmd": 10, "uid": 1.0})  # a float in an int field: rejected alone
broker.send(msgpack.packb(batch, use_bin_type=True))
broker.send(msgpack.packb([], use_bin_type=True))

want_replies = 2 * len(BIG)
replies, pushes, errors = [], [], []
deadline = time.time() + 30
fwd.setsockopt(zmq.RCVTIMEO, 500)
while time.time() < deadline and (len(replies) < want_replies or len(pushes) < want_replies - 1):
    try:
        frames = fwd.recv_multipart()
    except zmq.Again:
        continue
    if len(frames) != 2:
        errors.append("egress message with %d frames" % len(frames))
        continue
    value = msgpack.unpackb(frames[1], raw=False, strict_map_key=False)
    for m in value if isinstance(value, list) else [value]:
        if m.get("cmd") == 220:
            # a push to a player with a str uid goes to its connection (230 rows carry int uids)
            b = msgpack.unpackb(m["body"], raw=False)
            (pushes if "sn" not in b and "ret" not in b else replies).append(m)
        elif m.get("cmd") == 230:
            pushes.append(m)
        else:
            errors.append("unexpected egress cmd %r" % m.get("cmd"))

by_i = {}
for r in replies:
    body = msgpack.unpackb(r["body"], raw=False)
    if r.get("ret") != 0 or body.get("ret") != 0:
        errors.append("reply ret %r / %r: %r %r" % (r.get("ret"), body.get("ret"), {k: v for k, v in r.items() if k != "body"}, body))
        continue
    d = body["data"]
    by_i[d["data"]["i"]] = (r, body, d)

for i in list(range(len(BIG))) + [10 + k for k in range(len(BIG))]:
    f = BIG[i % 10]
    if i not in by_i:
        errors.append("no reply for task %d" % i)
        continue
    r, body, d = by_i[i]
    # the envelope of the 220 keeps node_id, conn_id and tag exactly
    for k in ("node_id", "conn_id", "tag"):
        if r.get(k) != f[k] or type(r.get(k)) is not int:
            errors.append("task %d: 220 %s = %r, want %r" % (i, k, r.get(k), f[k]))
    if body.get("cmd") != "fields" or body.get("sn") != f["sn"] or type(body.get("sn")) is not int:
        errors.append("task %d: body cmd/sn = %r/%r" % (i, body.get("cmd"), body.get("sn")))
    # every task field as the handler saw it comes back as the same integer (never a float)
    pairs = [("uid", "uid"), ("nodeId", "node_id"), ("connId", "conn_id"), ("tag", "tag"), ("userdata", "userdata"),
             ("custom", "custom"), ("ts", "ts"), ("flags", "flags")]
    for mine, theirs in pairs:
        if d.get(mine) != f[theirs] or type(d.get(mine)) is not type(f[theirs]):
            errors.append("task %d: handler saw %s = %r (%s), sent %r" % (i, mine, d.get(mine), type(d.get(mine)).__name__, f[theirs]))
    if d.get("clientIp") != "203.0.113.9":
        errors.append("task %d: client_ip %r" % (i, d.get("clientIp")))
    dd = d.get("data", {})
    if dd.get("big") != 2**62 or dd.get("neg") != -(2**62) or dd.get("f") != 1.5 or dd.get("s") != "é" or dd.get("b") != b"\x00\x01":
        errors.append("task %d: data round trip %r" % (i, dd))

for p in pushes:
    if p["cmd"] == 220:
        pb = msgpack.unpackb(p["body"], raw=False)
        if p.get("conn_id") != 12345 or pb != {"cmd": "pushed", "data": {"to": "玩家-1"}}:
            errors.append("push to a str uid: %r" % pb)
        continue
    rows = p.get("rows") or []
    if len(rows) != 1 or len(rows[0]["uids"]) != 1:
        errors.append("push rows %r" % rows)
        continue
    pb = msgpack.unpackb(rows[0]["body"], raw=False)
    if pb.get("cmd") != "pushed" or "sn" in pb or pb["data"]["to"] != rows[0]["uids"][0]:
        errors.append("push body %r" % pb)

print(json.dumps({"replies": len(replies), "pushes": len(pushes), "errors": errors[:20]}))
