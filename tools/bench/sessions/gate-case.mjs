/**
 * One run of one case of the output-gate benchmark, in a fresh process (started by gate.mjs):
 *
 *   node --conditions=@peony/source --import tsx gate-case.mjs --case=<level|redis>-<ungated|gated> --mode=<saturation|latency>
 *        [--players=10000] [--seconds=10] [--warmup=1] [--window=1024] [--rate=R]
 *   node --conditions=@peony/source --import tsx gate-case.mjs --case=<level|redis>-bare-fenced-write --batch=B --period-ms=P [--players] [--seconds] [--warmup]
 *
 * Three threads, as peony-server has them: a storage host thread serving LevelStorage (a fresh
 * directory) or RedisStorage (a redis-server of this run's own, no persistence) over a
 * MessagePort (host-thread.mjs); a worker thread with a WorkerRuntime on a RemoteStorage
 * (gate-thread.mjs); and this thread, which plays the client (it reads every reply) and the
 * master with its default limits: at most `window` (1,024, claimedMaxSize) tasks dispatched to
 * the worker and not yet reported done, at most 4 of one player (laneMaxInFlight), dispatch
 * messages of at most 256 pre-encoded task maps (transferred), the rest waiting in a queue of
 * at most 10,000 (queueMaxSize).
 *
 * Every player's session (a 1,000-byte state, a 1,011-byte record) is loaded, stored and clean
 * before anything is measured. Requests go to players drawn by a seeded xorshift32 over all of
 * them, each player's `sn` 1, 2, 3 …; `ungated` sends the route `play` ({gate: 'none'}), `gated`
 * the route `buy` ({gate: 'stored'}): the same handler (it writes the sn into the state).
 *
 * - saturation: closed loop, the window always full; value = replies received per second
 *   between `warmup` and `seconds` (then nothing more is sent and the rest drains).
 * - latency: open loop paced at `rate` requests/s: every ~1 ms (a timer's resolution) the
 *   requests due arrive in the queue (more than 5 ms behind schedule, the lost time is skipped,
 *   not sent in a burst), and leave it as the window allows; latency = arrival (this thread's
 *   `performance.now()`) → its reply arriving here, so it includes any wait in the queue, as
 *   behind a real master. Requests that arrive in the first `warmup` seconds are not recorded.
 *   Value = p99 (ms). A request that finds the queue full (the master would refuse it -10002)
 *   means the route cannot keep up with the rate: the run fails as overloaded.
 * - bare-fenced-write: no runtime; `writeFenced` calls of `batch` records through the same
 *   RemoteStorage → host thread → driver path, one every `period-ms` (gate-thread.mjs). Value =
 *   p99 of the calls' latency (ms).
 *
 * Checks (a failed check fails the run): every request answered exactly once with ret 0, in
 * per-player order (lib/order.mjs), every dispatched task reported done once with outcome ok;
 * gated: every request went through the gate (gated = released = requests), no gate failure and,
 * read from storage before the runtime stops, every player's stored sn is the sn of its last
 * answered request (a reply leaves only once its change is stored); no write refused or failed.
 * Prints one line `{"bench":"result", value, ...}`.
 */
import { join } from 'node:path'
import { MessageChannel } from 'node:worker_threads'
import { encodeTasks, msgpackBodyCodec, packValue } from '@peony/protocol'
import { parseArgs, sleep } from '../lib/run.mjs'
import { createTracker, verify } from '../lib/order.mjs'
import { latencySummary } from '../lib/stats.mjs'
import { HERE, caseDir, emitResult, hostConfig, nextMessage, pace, startHost, startThread, xorshift32 } from './common.mjs'

const args = parseArgs({ case: '', mode: 'saturation', players: 10_000, seconds: 10, warmup: 1, window: 1024, rate: 0, batch: 0, periodMs: 0 })
const dir = caseDir('peony-bench-gate-')

const FIRST_UID = 100_001
/** The master's defaults: tasks of one player dispatched at a time, tasks per dispatch message, queue bound per worker. */
const LANE_MAX = 4
const BATCH_MAX = 256
const QUEUE_MAX = 10_000
const m = /^(level|redis)-(ungated|gated|bare-fenced-write)$/.exec(args.case)
if (!m) throw new TypeError(`unknown --case=${args.case}`)
const [, driver, variant] = m
const P = args.players
if (!(args.window >= 1 && args.window <= (P * LANE_MAX) / 2)) throw new RangeError(`--window must be 1..${(P * LANE_MAX) / 2}`)
if (variant !== 'bare-fenced-write' && args.mode === 'latency' && !(args.rate > 0)) throw new RangeError('--mode=latency needs --rate')
if (!(args.seconds > args.warmup)) throw new RangeError('--seconds must be more than --warmup')

const storage = await hostConfig(driver, dir)
const { port1, port2 } = new MessageChannel()
const host = await startHost(storage.config, port1)
const bare = variant === 'bare-fenced-write' ? { batch: args.batch, periodMs: args.periodMs, seconds: args.seconds, warmupS: args.warmup } : undefined
const w = startThread(
  join(HERE, 'gate-thread.mjs'),
  { port: port2, mode: bare ? 'bare' : 'peony', players: P, firstUid: FIRST_UID, bare },
  [port2],
  'peony-worker',
)

let out
try {
  out = bare ? await bareCase() : await peonyCase()
} finally {
  await w.terminate()
  await host.close()
  await storage.stop()
}
emitResult({ ...out, case: args.case, mode: bare ? 'latency' : args.mode, players: P, seconds: args.seconds, warmup: args.warmup })
process.exit(0)

/** The baseline: the thread paces and times the calls. */
async function bareCase() {
  if (!(args.batch >= 1 && args.periodMs > 0)) throw new RangeError('bare-fenced-write needs --batch ≥ 1 and --period-ms > 0')
  const res = await nextMessage(w, (x) => x.t === 'result', (args.seconds + 300) * 1000, 'the bare writes')
  const s = latencySummary(res.sample)
  return {
    value: s.p99,
    ...s,
    batch: res.batch,
    periodMs: res.periodMs,
    callsPerS: res.callsPerS,
    issued: res.issued,
    skippedMs: res.skippedMs,
    late: res.late,
    recordBytes: res.recordBytes,
    ok: res.errors.length === 0,
    errors: res.errors,
  }
}

/** The runtime cases: warm-up in the thread, then closed-loop or paced requests from here. */
async function peonyCase() {
  const ready = await nextMessage(w, (x) => x.t === 'ready', 300_000, 'the warm-up')
  const cmd = variant === 'gated' ? 'buy' : 'play'
  const closedLoop = args.mode === 'saturation'
  const lastSn = new Uint32Array(P)
  const inFlight = new Uint8Array(P)
  /** Per player, the arrival time of its requests in flight, at sn % 4 (at most 4 in flight, consecutive sn); -1: not recorded. */
  const sentAt = new Float64Array(P * LANE_MAX)
  /** Paced requests waiting to be dispatched (their arrival times), as the master's queue. */
  const queue = new Float64Array(QUEUE_MAX)
  let qHead = 0
  let qLen = 0
  const draw = xorshift32(0x811c9dc5)
  const tracker = createTracker()
  const codec = msgpackBodyCodec
  let nextId = 1
  let sent = 0
  let replies = 0
  let refused = 0
  let maxQueued = 0
  let maxUnanswered = 0
  let badReplies = 0
  const firstBad = []
  let unexpected = 0
  let sending = true
  let recording = false
  let windowReplies = 0
  const latencies = []
  let doneSeen = new Uint8Array(1 << 20)
  let doneCount = 0
  let doneTwice = 0
  let drained = () => {}

  /** Dispatches n requests (closed loop: new ones; paced: the oldest queued) in messages of at most BATCH_MAX tasks. */
  function dispatch(n) {
    while (n > 0) {
      const c = Math.min(n, BATCH_MAX)
      n -= c
      const tasks = new Array(c)
      const slots = new Int32Array(c)
      const ids = new Int32Array(c)
      for (let i = 0; i < c; i++) {
        let k
        do k = draw() % P
        while (inFlight[k] >= LANE_MAX)
        inFlight[k]++
        const sn = ++lastSn[k]
        const uid = FIRST_UID + k
        tasks[i] = { cmd: 10, uid, nodeId: 1, connId: uid, body: packValue({ cmd, sn }) }
        slots[i] = k * LANE_MAX + (sn & 3)
        ids[i] = nextId++
      }
      let frame = encodeTasks(tasks)
      if (frame.byteOffset !== 0 || frame.byteLength !== frame.buffer.byteLength) frame = frame.slice()
      for (let i = 0; i < c; i++) {
        if (closedLoop) sentAt[slots[i]] = -1
        else {
          const t = queue[qHead]
          qHead = (qHead + 1) % QUEUE_MAX
          qLen--
          sentAt[slots[i]] = t >= tWin ? t : -1
        }
      }
      w.postMessage({ t: 'tasks', buf: frame.buffer, ids }, [frame.buffer, ids.buffer])
      sent += c
      if (sent - replies > maxUnanswered) maxUnanswered = sent - replies
    }
  }
  /** As the master's pump: at most `window` tasks dispatched and not reported done. */
  const pump = () => {
    const room = args.window - (sent - doneCount)
    if (room <= 0) return
    if (closedLoop) {
      if (sending) dispatch(room)
    } else if (qLen > 0) dispatch(Math.min(room, qLen))
  }
  const finished = () => !sending && qLen === 0 && replies === sent && doneCount === sent

  w.on('message', (msg) => {
    if (msg.t === 'out') {
      const now = performance.now()
      for (const e of msg.batch) {
        const k = Number(e.connId) - FIRST_UID
        if (e.cmd !== 220 || !(k >= 0 && k < P) || inFlight[k] === 0) {
          unexpected++
          continue
        }
        const r = codec.decodeReply(e.body)
        const sn = Number(r.sn)
        if (e.ret !== 0 || r.ret !== 0) {
          badReplies++
          if (firstBad.length < 5) firstBad.push([FIRST_UID + k, sn, e.ret])
        }
        tracker.see(FIRST_UID + k, sn)
        inFlight[k]--
        replies++
        if (recording) windowReplies++
        const t = sentAt[k * LANE_MAX + (sn & 3)]
        if (t >= 0) latencies.push(now - t)
      }
    } else if (msg.t === 'done') {
      for (const id of msg.ids) {
        if (id >= doneSeen.length) {
          const grown = new Uint8Array(Math.max(doneSeen.length * 2, id + 1))
          grown.set(doneSeen)
          doneSeen = grown
        }
        if (doneSeen[id] === 1) doneTwice++
        doneSeen[id] = 1
        doneCount++
      }
      pump()
    } else return
    if (finished()) drained()
  })

  const t0 = performance.now()
  const tWin = t0 + args.warmup * 1000
  const tEnd = t0 + args.seconds * 1000
  const window = { from: 0, to: 0 }
  setTimeout(() => {
    recording = true
    window.from = performance.now()
    w.postMessage({ t: 'window', on: true })
  }, tWin - t0)
  let paced = { skippedMs: 0, late: 0 }
  if (closedLoop) {
    pump()
    await sleep(tEnd - t0)
  } else {
    // The requests due by now arrive in the queue every ~1 ms (a timer's resolution).
    paced = await pace(args.rate, t0, tEnd, (n, now) => {
      for (let i = 0; i < n; i++) {
        // Beyond the master's queue bound a request would be refused (-10002): the run fails.
        if (qLen === QUEUE_MAX) refused++
        else {
          queue[(qHead + qLen) % QUEUE_MAX] = now
          qLen++
        }
      }
      if (qLen > maxQueued) maxQueued = qLen
      pump()
    })
  }
  sending = false
  recording = false
  window.to = performance.now()
  w.postMessage({ t: 'window', on: false })
  const sendMs = window.to - t0
  if (!finished()) {
    await new Promise((resolve, reject) => {
      drained = resolve
      setTimeout(
        () => reject(new Error(`not drained after 60 s: ${qLen} queued, ${sent - replies} unanswered, ${sent - doneCount} not reported done`)),
        60_000,
      ).unref()
    })
  }
  const drainMs = performance.now() - window.to

  // Every player's last sn, for the order check and (gated) the stored-state check.
  const expected = new Map()
  const check = []
  for (let k = 0; k < P; k++) {
    if (lastSn[k] === 0) continue
    expected.set(FIRST_UID + k, lastSn[k])
    if (variant === 'gated') check.push(FIRST_UID + k, lastSn[k])
  }
  w.postMessage({ t: 'stop', check: Int32Array.from(check) })
  const st = await nextMessage(w, (x) => x.t === 'stopped', 120_000, 'the runtime to stop')
  const order = verify([tracker.report()], expected)

  const errors = []
  if (!order.ok) errors.push(...order.errors.slice(0, 5))
  if (badReplies > 0) errors.push(`${badReplies} replies with ret ≠ 0 (first [uid, sn, ret]: ${JSON.stringify(firstBad)})`)
  if (unexpected > 0) errors.push(`${unexpected} unexpected egress messages`)
  if (doneTwice > 0 || doneCount !== sent) errors.push(`${doneCount} done reports (${doneTwice} twice) for ${sent} tasks`)
  if (st.outcomes.ok !== sent || Object.keys(st.outcomes).length !== 1) errors.push(`outcomes ${JSON.stringify(st.outcomes)} for ${sent} tasks`)
  const g = st.gate
  if (variant === 'gated') {
    if (g.gated !== sent || g.released !== sent) errors.push(`gate: ${g.gated} gated, ${g.released} released for ${sent} requests`)
    if (st.storedDiffers > 0)
      errors.push(
        `${st.storedDiffers} of ${st.storedChecked} players' stored sn differ from their last answered request (first [uid, stored, answered]: ${JSON.stringify(st.firstDiffers)})`,
      )
  } else if (g.gated !== 0) errors.push(`${g.gated} gated requests in the ungated case`)
  if (g.failures + g.notStored + g.dropped + g.waiting > 0)
    errors.push(`gate failures ${g.failures}, notStored ${g.notStored}, dropped ${g.dropped}, waiting ${g.waiting}`)
  if (st.calls.refused + st.final.fenced + st.final.flushErrors > 0)
    errors.push(`writes refused ${st.calls.refused}, fenced ${st.final.fenced}, flush errors ${st.final.flushErrors}`)
  if (refused > 0) errors.push(`overloaded: ${refused} requests found the queue full (${QUEUE_MAX} waiting), as the master would refuse them -10002`)

  const winS = (window.to - window.from) / 1000
  const sizes = latencySummary(st.calls.sizes)
  const writes = {
    // writeFenced calls in the measured span: the gate's group commits (split in calls of
    // flushBatchSize = 500), and write-behind's.
    calls: st.calls.sizes.length,
    callsPerS: st.calls.sizes.length / winS,
    meanSessions: st.calls.sizes.reduce((a, b) => a + b, 0) / Math.max(1, st.calls.sizes.length),
    sessions: { p50: sizes.p50, p90: sizes.p90, max: sizes.max },
    ms: latencySummary(st.calls.ms),
    // The same from the runtime's own stats (stats().sessions: flushes, flushedSessions).
    stats: { ...st.window, meanSessions: st.window.flushedSessions / Math.max(1, st.window.flushes) },
  }
  const base = {
    requests: sent,
    window: args.window,
    windowS: winS,
    sendMs,
    drainMs,
    warmMs: ready.warmMs,
    writes,
    gate: g,
    final: st.final,
    storedChecked: st.storedChecked,
    maxUnanswered,
    ok: errors.length === 0,
    errors,
  }
  if (closedLoop) return { value: windowReplies / winS, windowReplies, ...base }
  const s = latencySummary(latencies)
  return { value: s.p99, ...s, rate: args.rate, sendRate: (sent + qLen) / (sendMs / 1000), ...paced, refused, maxQueued, ...base }
}
