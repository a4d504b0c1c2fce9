/**
 * A broker in its own process for the overload test: one DEALER to the master's intake, driven
 * over the IPC channel. Being another process, its pace does not depend on the master's event
 * loop (an in-process sender stalls whenever the master does, and so never lets a backlog form
 * in front of intake).
 *
 * Every request is `busy` with a unique sn (the sequence number over the whole run), uid
 * `1 + sn % UIDS`, connId = uid, and `data: { t }`, where `t` is the absolute time
 * (`performance.timeOrigin + performance.now()`) at which its frame was built and sent.
 *
 * Commands (parent → child):
 * - `{ t: 'window', size, ms, sn0 }`: closed loop for `ms`: keeps at most `size` requests
 *   unanswered, as told by `{ t: 'answered', n }` messages (answers to this phase so far);
 * - `{ t: 'open', rate, ms, sn0 }`: open loop: `rate × ms / 1000` requests, the k-th due at
 *   `start + k / rate`, sent in frames of at most 64 on a ~1 ms timer; whatever the timer made
 *   late goes out in the next tick, so the offered rate holds on average. `lag` (actual send
 *   time − due time) is reported, so a sender that fell behind is seen;
 * Replies (child → parent): `{ t: 'ready' }`, then per phase `{ t: 'done', sent, t0, ms, lagP99, lagMax }`
 * (`t0`: the phase's start, when its request k was due in the open loop).
 *
 * Run: node --conditions=@peony/source --import tsx paced-broker.ts <intake endpoint>
 */
import * as zmq from 'zeromq'
import { encodeTaskFrames, packValue, type Task } from '@peony/protocol'

const UIDS = 1000

type Command = { t: 'window'; size: number; ms: number; sn0: number } | { t: 'open'; rate: number; ms: number; sn0: number } | { t: 'answered'; n: number }

const clock = (): number => performance.timeOrigin + performance.now()
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const send = (m: object): void => void process.send!(m)

const sock = new zmq.Dealer({ sendHighWaterMark: 0, linger: 0 })
sock.connect(process.argv[2]!)
let answered = 0

/** Sends requests sn0 + from … sn0 + to - 1, stamped now, in frames of up to 64. */
async function sendRange(sn0: number, from: number, to: number): Promise<number> {
  const t = clock()
  for (let i = from; i < to; i += 64) {
    const tasks: Task[] = []
    for (let k = i; k < Math.min(to, i + 64); k++) {
      const sn = sn0 + k
      const uid = 1 + (sn % UIDS)
      tasks.push({ cmd: 10, uid, nodeId: 7, connId: uid, body: packValue({ cmd: 'busy', sn, data: { t } }) })
    }
    for (const f of encodeTaskFrames(tasks)) await sock.send(f)
  }
  return t
}

async function windowed(size: number, ms: number, sn0: number): Promise<void> {
  answered = 0
  const t0 = clock()
  let sent = 0
  while (clock() - t0 < ms) {
    const room = size - (sent - answered)
    if (room > 0) {
      await sendRange(sn0, sent, sent + room)
      sent += room
    }
    await sleep(1)
  }
  send({ t: 'done', sent, t0, ms: clock() - t0, lagP99: 0, lagMax: 0 })
}

async function open(rate: number, ms: number, sn0: number): Promise<void> {
  const total = Math.floor((rate * ms) / 1000)
  const lags = new Float64Array(total)
  const t0 = clock()
  let sent = 0
  while (sent < total) {
    const due = Math.min(total, Math.floor(((clock() - t0) * rate) / 1000))
    if (due > sent) {
      const t = await sendRange(sn0, sent, due)
      for (let k = sent; k < due; k++) lags[k] = t - (t0 + (k * 1000) / rate)
      sent = due
    }
    await sleep(1)
  }
  const sorted = Array.from(lags).sort((a, b) => a - b)
  send({ t: 'done', sent, t0, ms: clock() - t0, lagP99: sorted[Math.floor(0.99 * (sorted.length - 1))], lagMax: sorted.at(-1) })
}

process.on('message', (m: Command) => {
  switch (m.t) {
    case 'answered':
      answered = m.n
      break
    case 'window':
      void windowed(m.size, m.ms, m.sn0)
      break
    case 'open':
      void open(m.rate, m.ms, m.sn0)
      break
  }
})
// The test is gone (or done with us): so are we.
process.on('disconnect', () => process.exit(0))
send({ t: 'ready' })
