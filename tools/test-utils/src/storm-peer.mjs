// A storm of malformed frames, from its own process, paced at ~RATE frames/s until killed:
// random bytes, truncated msgpack, wrong types, floats in int fields, oversized frames,
// multipart messages, non-map values.
import * as zmq from 'zeromq'

const [endpoint, rateArg = '10000', oversizeArg = '70000'] = process.argv.slice(2)
const rate = Number(rateArg)
const sock = new zmq.Dealer({ sendHighWaterMark: 0, linger: 0 })
sock.connect(endpoint)
const rnd = (n) => Uint8Array.from({ length: n }, () => (Math.random() * 256) | 0)
const kinds = [
  () => rnd(1 + ((Math.random() * 200) | 0)),
  () => Uint8Array.from([0x82, 0xa3, 0x63, 0x6d, 0x64]), // truncated map
  () => Uint8Array.from([0x81, 0xa3, 0x63, 0x6d, 0x64, 0xcb, 0x40, 0x24, 0, 0, 0, 0, 0, 0]), // {cmd: 10.0}
  () => Uint8Array.from([0x81, 0xa3, 0x75, 0x69, 0x64, 0x01]), // {uid: 1}: no cmd
  () => Uint8Array.from([0xa5, 0x68, 0x65, 0x6c, 0x6c, 0x6f]), // "hello": not a map
  () => Uint8Array.from([0x92, 0x01, 0x02]), // [1, 2]
  () => new Uint8Array(Number(oversizeArg)), // over the frame limit
  () => [Uint8Array.from([0x80]), Uint8Array.from([0x80])], // two payload frames
  () => Uint8Array.from([0x80, 0x80]), // trailing bytes
]
let i = 0
const tickMs = 10
const perTick = Math.max(1, Math.round((rate * tickMs) / 1000))
async function tick() {
  for (let k = 0; k < perTick; k++) await sock.send(kinds[i++ % kinds.length]())
}
setInterval(() => void tick(), tickMs)
process.on('SIGTERM', () => process.exit(0))
