/**
 * The raw DEALER sender: a separate process that plays the broker for every benchmark, the same
 * program for the baselines and for Peony. It prints JSON event lines on stdout and exits when its
 * stdin closes (so queued frames are never cut off by an early exit).
 *
 * --mode=stream  Pre-encodes --tasks typical tasks (`tasks.mjs`) into frames of --batch, connects,
 *                waits for the connection, then sends them all with `await send()` per frame.
 *                --window=W   keep at most W tasks sent but not yet handled, as reported by the
 *                             handlers' trackers over UDP to --feedback-port (0 = open loop).
 *                --rate=R     pace at R tasks/s (0 = as fast as possible; more than 5 ms behind
 *                             schedule, the sender skips the lost time rather than bursting);
 *                             --stamp writes the send
 *                             time into each task just before its frame is sent (latency runs).
 *                Events: {bench:'connected'}, {bench:'sent', t0, t1, frames, tasks, …}.
 * --mode=ping    Connects (immediate, reconnect every 2 ms: the server may not exist yet) and sends
 *                one frame of the typical task for uids 1…--ping-uids every --interval ms, for ever.
 *                Stdin `kill <uid>` sends a task whose body cmd is `bench.exit` for that uid.
 *                Events: {bench:'ready'}, {bench:'kill-sent', at}.
 */
import dgram from 'node:dgram'
import readline from 'node:readline'
import * as zmq from 'zeromq'
import { Packr } from 'msgpackr'
import { encodeFrames, stampFrame, typicalTask, nowMs } from './tasks.mjs'
import { parseArgs, sleep } from './run.mjs'

const o = parseArgs({
  mode: 'stream',
  endpoint: '',
  tasks: 100_000,
  batch: 64,
  uids: 1000,
  seed: 1,
  window: 0,
  feedbackPort: 0,
  rate: 0,
  stamp: false,
  interval: 2,
  pingUids: 32,
})
if (!o.endpoint) throw new TypeError('--endpoint is required')
const emit = (e) => process.stdout.write(JSON.stringify({ bench: e.bench, ...e }) + '\n')

let finish
const stdinClosed = new Promise((r) => (finish = r))
const rl = readline.createInterface({ input: process.stdin })
const commands = []
rl.on('line', (l) => commands.push(l.trim()))
rl.on('close', () => finish())

async function stream() {
  const t = nowMs()
  const { frames, offsets, bytes } = encodeFrames(o.tasks, o.batch, { uids: o.uids, seed: o.seed, stamp: o.stamp })
  const encodeMs = nowMs() - t

  // Feedback: cumulative handled counts per tracker.
  const counts = new Map()
  let handled = 0
  let wake = null
  let udp
  if (o.window > 0) {
    if (!o.feedbackPort) throw new TypeError('--window needs --feedback-port')
    udp = dgram.createSocket('udp4')
    udp.on('message', (m) => {
      const [id, n] = m.toString().split(' ')
      const c = Number(n)
      const prev = counts.get(id) ?? 0
      if (c > prev) {
        counts.set(id, c)
        handled += c - prev
      }
      if (wake) {
        const w = wake
        wake = null
        w()
      }
    })
    await new Promise((r) => udp.bind(o.feedbackPort, '127.0.0.1', r))
  }

  const sock = new zmq.Dealer({ sendHighWaterMark: 1000, linger: 30_000 })
  const connected = new Promise((r) => sock.events.on('connect', () => r()))
  sock.connect(o.endpoint)
  await connected
  emit({ bench: 'connected', encodeMs, bytes, frames: frames.length })

  const periodMs = o.rate > 0 ? (o.batch / o.rate) * 1000 : 0
  let sentTasks = 0
  let stalls = 0
  let late = 0
  let maxLateMs = 0
  let maxOutstanding = 0
  let skippedMs = 0
  const t0 = nowMs()
  let next = t0
  for (let f = 0; f < frames.length; f++) {
    const frame = frames[f]
    const count = Math.min(o.batch, o.tasks - f * o.batch)
    if (o.window > 0) {
      while (sentTasks + count - handled > o.window) {
        const got = await new Promise((r) => {
          wake = () => r(true)
          setTimeout(() => r(false), 10_000).unref()
        })
        if (!got) {
          stalls++
          emit({ bench: 'stall', sentTasks, handled, window: o.window })
          break // never hang: open the window once and go on (the check will show what was lost)
        }
      }
    }
    if (periodMs > 0) {
      const now = nowMs()
      if (next > now + 0.05) await sleep(Math.max(1, Math.floor(next - now)))
      const t = nowMs()
      const lateBy = t - next
      if (lateBy > 1) {
        late++
        if (lateBy > maxLateMs) maxLateMs = lateBy
      }
      // More than 5 ms behind (this process was not scheduled, say): skip the lost time instead of
      // catching up in a burst, so the load stays paced; the real rate is reported as sendRate.
      if (lateBy > 5) {
        skippedMs += lateBy
        next = t
      }
      next += periodMs
    }
    if (o.stamp) stampFrame(frame, offsets[f], nowMs())
    await sock.send(frame)
    sentTasks += count
    if (sentTasks - handled > maxOutstanding) maxOutstanding = sentTasks - handled
  }
  const t1 = nowMs()
  emit({
    bench: 'sent',
    t0,
    t1,
    frames: frames.length,
    tasks: sentTasks,
    sendRate: sentTasks / ((t1 - t0) / 1000),
    stalls,
    late,
    maxLateMs,
    handledSeen: handled,
    maxOutstanding,
    skippedMs,
  })
  await stdinClosed
  udp?.close()
  sock.close()
}

async function ping() {
  const packr = new Packr({ useRecords: false })
  const sock = new zmq.Dealer({ immediate: true, reconnectInterval: 2, sendHighWaterMark: 1000, linger: 0 })
  sock.connect(o.endpoint)
  emit({ bench: 'ready' })
  let round = 0
  // A send may be pending (no server yet): end the process outright when told to stop.
  stdinClosed.then(() => process.exit(0))
  for (;;) {
    round++
    while (commands.length > 0) {
      const [cmd, arg] = commands.shift().split(' ')
      if (cmd === 'kill') {
        const uid = Number(arg)
        const task = { cmd: 10, uid, node_id: 1, conn_id: uid, body: packr.pack({ cmd: 'bench.exit', sn: round, data: Buffer.alloc(8) }) }
        const at = nowMs()
        await sock.send(packr.pack(task))
        emit({ bench: 'kill-sent', uid, at })
      }
    }
    const tasks = []
    for (let u = 1; u <= o.pingUids; u++) tasks.push(typicalTask(u, round, round))
    await sock.send(packr.pack(tasks))
    await sleep(o.interval)
  }
}

await (o.mode === 'ping' ? ping() : stream())
rl.close()
