/**
 * The worker thread of the output-gate benchmark (gate-case.mjs). Its sessions live in a
 * RemoteStorage over the MessagePort to the storage host thread, as
 * packages/master/src/thread/worker-main.ts builds it; the case's main thread plays the master.
 *
 * workerData.data: {port, mode: 'peony' | 'bare', players, firstUid, bare?: {batch, periodMs, seconds, warmupS}}.
 *
 * mode 'peony': a WorkerRuntime (default settings: gateIntervalMs 2, flushBatchSize 500,
 * write-behind every 1 s for changes older than 4 s) whose app has a 1,000-byte Uint8Array
 * session (dirty: 'auto') and two routes with the same handler, which writes the request's sn
 * into the state's first 4 bytes and replies `{ok: 1}`: `play` ({gate: 'none'}) and `buy`
 * ({gate: 'stored'}).
 *   1. Warm-up, in this thread: one `fill` request per player (1,000 in flight; the state gets
 *      the uid's bytes, common.mjs fillState), then `sessions.flush()`: every session resident,
 *      clean and stored. Posts {t:'ready'}.
 *   2. As worker-main.ts does: {t:'tasks', buf, ids} from the main thread → decodeTasks →
 *      `runtime.dispatch`; the egress goes back once per turn ({t:'out', batch}), and so do the
 *      settled ids ({t:'done', ids}).
 *   3. {t:'window', on} marks the measured span: the session stats and every writeFenced call
 *      (its size and its latency, call → acknowledgement) are recorded inside it.
 *   4. {t:'stop', check: Int32Array [uid, sn, …]}: reads those uids' records from storage BEFORE
 *      the runtime stops (the stop flushes everything) and counts those whose stored sn differs,
 *      then stops the runtime; posts {t:'stopped', …}.
 *
 * mode 'bare' (the baseline, no runtime): claims every player's key as loads do, writes every
 * record once (as the warm-up's flush), then times `storage.writeFenced` calls of `batch` one-op
 * writes of distinct players' 1,011-byte records (common.mjs recordOf; each call's values back to
 * back in one buffer, as a group commit builds them), one call every `periodMs` (open loop: a
 * call does not wait for the previous one), for `seconds`; the calls started in the first
 * `warmupS` are not recorded. Posts {t:'result', sample: Float64Array (ms per call), …}.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { createApp } from '@peony/worker'
import { WorkerRuntime } from '@peony/worker/host'
import { RemoteStorage } from '@peony/storage/remote'
import { decodeTasks, packValue, unpackValue } from '@peony/protocol'
import { claimKeys, fillState, keyOf, makeDriver, pace, recordOf, shuffle, STATE_BYTES, stateOf, WORKER_INFO } from './common.mjs'

const { port, mode, players, firstUid, bare } = workerData.data
const post = (m, transfer) => parentPort.postMessage(m, transfer)

const storage = new RemoteStorage(port)
/** Every writeFenced call inside the measured span: its sessions and its latency (ms). */
const calls = { on: false, sizes: [], ms: [], refused: 0 }
const writeFenced = storage.writeFenced.bind(storage)
storage.writeFenced = (writes) => {
  if (!calls.on) return writeFenced(writes)
  const t0 = performance.now()
  return writeFenced(writes).then((r) => {
    calls.ms.push(performance.now() - t0)
    calls.sizes.push(writes.length)
    calls.refused += r.refused.length
    return r
  })
}

try {
  await storage.open()
  if (mode === 'bare') post({ t: 'result', ...(await bareWrites()) })
  else await peony()
} catch (err) {
  post({ t: 'fatal', message: err?.message ?? String(err), stack: err?.stack })
}

/** Collects items and hands them to `send` as one array once per event-loop turn. */
function perTurn(send) {
  let items = []
  return (item) => {
    if (items.push(item) === 1) {
      setImmediate(() => {
        const batch = items
        items = []
        send(batch)
      })
    }
  }
}

/** The uids of the run's players. */
function uidList() {
  return Int32Array.from({ length: players }, (_, i) => firstUid + i)
}

async function peony() {
  const app = createApp()
  const def = app.session({ initial: () => new Uint8Array(STATE_BYTES) })
  app.route('fill', (req) => {
    fillState(req.uid, def.of(req).state)
  })
  const play = (req) => {
    const st = def.of(req).state
    const sn = req.sn
    st[0] = sn >>> 24
    st[1] = (sn >>> 16) & 0xff
    st[2] = (sn >>> 8) & 0xff
    st[3] = sn & 0xff
    req.reply({ ok: 1 })
  }
  app.route('play', play, { gate: 'none' })
  app.route('buy', play, { gate: 'stored' })

  // Egress and settled ids go to the main thread once per turn, as worker-main.ts posts them to
  // the egress thread and the master.
  let warming = true
  const out = perTurn((batch) => post({ t: 'out', batch }))
  const done = perTurn((list) => {
    const ids = Int32Array.from(list)
    post({ t: 'done', ids }, [ids.buffer])
  })
  const outcomes = {}
  const driver = makeDriver()
  const runtime = new WorkerRuntime({
    app,
    info: WORKER_INFO,
    egress: {
      send(msg) {
        if (!warming) out(msg)
      },
    },
    onTaskDone(id, outcome) {
      if (warming) return driver.track(id, outcome)
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
      done(id)
    },
    sessions: { storage },
  })
  await runtime.start()

  const tWarm = performance.now()
  const fill = packValue({ cmd: 'fill', sn: 1 })
  const warmed = await driver.run(runtime, Array.from(uidList()), (uid) => ({ cmd: 10, uid, nodeId: 1, connId: uid, body: fill }), 1000)
  if (warmed.ok !== players) throw new Error(`warm-up: expected ${players} ok tasks, got ${JSON.stringify(warmed)}`)
  await runtime.worker.sessions.flush()
  const warm = runtime.stats().sessions
  if (warm.resident !== players || warm.dirty !== 0) throw new Error(`after the warm-up: ${JSON.stringify(warm)}`)
  warming = false
  post({ t: 'ready', warmMs: performance.now() - tWarm, resident: warm.resident })

  let win = {}
  parentPort.on('message', async (m) => {
    if (m.t === 'tasks') {
      const { tasks } = decodeTasks(new Uint8Array(m.buf), { maxFrameBytes: Number.MAX_SAFE_INTEGER })
      const ids = m.ids
      for (let i = 0; i < tasks.length; i++) runtime.dispatch(ids[i], tasks[i])
    } else if (m.t === 'window') {
      const s = runtime.stats().sessions
      if (m.on) {
        calls.on = true
        win = { t0: performance.now(), from: s }
      } else {
        calls.on = false
        win.ms = performance.now() - win.t0
        win.to = s
      }
    } else if (m.t === 'stop') {
      try {
        post({ t: 'stopped', ...(await stop(m.check)) })
      } catch (err) {
        post({ t: 'fatal', message: err?.message ?? String(err), stack: err?.stack })
      }
    }
  })

  /** Checks the stored sn of the listed uids, stops the runtime, and reports. */
  async function stop(check) {
    let storedDiffers = 0
    const firstDiffers = []
    for (let i = 0; i < check.length; i += 2000) {
      const part = check.subarray(i, Math.min(i + 2000, check.length))
      const keys = []
      for (let j = 0; j < part.length; j += 2) keys.push(keyOf(part[j]))
      const values = await storage.getMany(keys)
      values.forEach((v, j) => {
        const want = part[2 * j + 1]
        // The record is [1, bin(the state's encoding), nil]; the state is a Uint8Array.
        const st = v === undefined ? undefined : unpackValue(unpackValue(v)[1])
        const got = st === undefined ? -1 : ((st[0] << 24) | (st[1] << 16) | (st[2] << 8) | st[3]) >>> 0
        if (got !== want) {
          storedDiffers++
          if (firstDiffers.length < 5) firstDiffers.push([part[2 * j], got, want])
        }
      })
    }
    await runtime.stop()
    const final = runtime.stats().sessions
    await storage.close()
    const delta = (k) => win.to[k] - win.from[k]
    return {
      outcomes,
      storedChecked: check.length / 2,
      storedDiffers,
      firstDiffers,
      gate: final.gate,
      final: {
        flushes: final.flushes,
        flushedSessions: final.flushedSessions,
        flushErrors: final.flushErrors,
        fenced: final.fenced,
        resident: final.resident,
        dirty: final.dirty,
      },
      window: {
        ms: win.ms,
        flushes: delta('flushes'),
        flushedSessions: delta('flushedSessions'),
        gated: win.to.gate.gated - win.from.gate.gated,
        released: win.to.gate.released - win.from.gate.released,
      },
      calls: { sizes: Float64Array.from(calls.sizes), ms: Float64Array.from(calls.ms), refused: calls.refused },
    }
  }
}

/** The baseline: batched writeFenced calls of distinct players' records, paced, each one timed. */
async function bareWrites() {
  const { batch, periodMs, seconds, warmupS } = bare
  if (!(batch >= 1 && batch <= players)) throw new RangeError(`batch must be 1..${players}, got ${batch}`)
  const uids = uidList()
  const gens = await claimKeys(storage, uids)
  const recs = Array.from(uids, (uid) => recordOf(stateOf(uid)))
  const R = recs[0].byteLength
  /** One call's writes: the records of `idx` (indexes into uids) back to back in one buffer. */
  const writesOf = (idx) => {
    const buf = new Uint8Array(idx.length * R)
    const writes = new Array(idx.length)
    for (let k = 0; k < idx.length; k++) {
      const i = idx[k]
      buf.set(recs[i], k * R)
      writes[k] = { fence: keyOf(uids[i]), generation: gens[i], ops: [{ type: 'put', key: keyOf(uids[i]), value: buf.subarray(k * R, (k + 1) * R) }] }
    }
    return writes
  }
  // Every record once, as the Peony cases' warm-up flush leaves them.
  for (let i = 0; i < players; i += 500) await storage.writeFenced(writesOf(Array.from({ length: Math.min(500, players - i) }, (_, k) => i + k)))
  // Calls take consecutive runs of a seeded permutation: distinct players in a call, all of them in turn.
  const order = shuffle(
    Int32Array.from({ length: players }, (_, i) => i),
    0x2545f491,
  )
  let cursor = 0
  const nextCall = () => {
    const idx = new Array(batch)
    for (let k = 0; k < batch; k++) {
      idx[k] = order[cursor]
      cursor = (cursor + 1) % players
    }
    return writesOf(idx)
  }

  const sample = []
  const pending = new Set()
  let refused = 0
  let issued = 0
  const t0 = performance.now()
  const tWin = t0 + warmupS * 1000
  const paced = await pace(1000 / periodMs, t0, t0 + seconds * 1000, (n, now) => {
    for (let i = 0; i < n; i++) {
      // The records are copied into the call's buffer before the clock starts, as a group
      // commit encodes them before its call.
      const writes = nextCall()
      const tc = performance.now()
      const p = storage.writeFenced(writes).then((r) => {
        if (now >= tWin) sample.push(performance.now() - tc)
        refused += r.refused.length
        pending.delete(p)
      })
      pending.add(p)
      issued++
    }
  })
  const sendMs = performance.now() - t0
  await Promise.all([...pending])
  await storage.close()
  const errors = []
  if (refused > 0) errors.push(`${refused} writes refused`)
  if (sample.length === 0) errors.push('no call recorded')
  return { sample: Float64Array.from(sample), issued, callsPerS: issued / (sendMs / 1000), ...paced, batch, periodMs, recordBytes: R, errors }
}
