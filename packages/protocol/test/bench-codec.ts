/**
 * Ad-hoc throughput check of decodeTasks against msgpackr `unpack` on the same frame (not a test:
 * run `node --conditions=@peony/source --import tsx test/bench-codec.ts [rounds]`). A 64-task
 * batch of ~160-byte tasks, each with a 100-byte body.
 */
import { unpack } from 'msgpackr'
import { decodeTasks, encodeTasks, type Task } from '@peony/protocol'

/** ~160-byte tasks with a 100-byte body (the baselines' typical task), as a ZeroMQ Buffer. */
const tasks: Task[] = []
for (let i = 0; i < 64; i++) {
  tasks.push({
    cmd: 10,
    uid: 100000 + i * 7919,
    nodeId: 3,
    connId: 2 ** 40 + i,
    tag: i,
    body: new Uint8Array(100).fill(i),
    ts: 1_764_000_000_000 + i,
  })
}
const frame = Buffer.from(encodeTasks(tasks))
console.log(`frame ${frame.length} bytes, ${(frame.length / 64).toFixed(1)} bytes/task`)

function run(name: string, fn: () => unknown, seconds = 1.5): number {
  // warm-up
  for (let i = 0; i < 2000; i++) fn()
  let n = 0
  const t0 = process.hrtime.bigint()
  let t = t0
  while (t - t0 < BigInt(seconds * 1e9)) {
    for (let i = 0; i < 200; i++) fn()
    n += 200
    t = process.hrtime.bigint()
  }
  const perSec = (n * 64) / (Number(t - t0) / 1e9)
  console.log(`${name}: ${(perSec / 1e6).toFixed(2)} M tasks/s`)
  return perSec
}

let sink = 0
const rounds = Number(process.argv[2] ?? 3)
for (let k = 0; k < rounds; k++) {
  const a = run('decodeTasks     ', () => (sink += decodeTasks(frame).tasks.length))
  const b = run('msgpackr unpack ', () => (sink += (unpack(frame) as unknown[]).length))
  console.log(`ratio decodeTasks/unpack: ${(a / b).toFixed(2)}`)
}
if (sink === 0) console.log(sink)
