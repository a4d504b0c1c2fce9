/**
 * The worker thread of the load-latency benchmark (load-latency-case.mjs), with a RemoteStorage
 * over the MessagePort to the storage host thread, as in peony-server.
 *
 * workerData.data: {port, mode, warm: uids, timed: uids}. One request (or call) at a time, the
 * next after the previous one's answer; the warm-up uids first (not recorded), then the timed
 * ones. Latency in µs, from `performance.now()` in this thread.
 *
 * - peony: a WorkerRuntime (default settings) whose app has a 1,000-byte Uint8Array session
 *   (dirty: 'manual', and the route changes nothing, so nothing is written during the run) and
 *   one route that answers `req.reply({ok: 1})`. Latency = `runtime.dispatch(id, task)` → the
 *   reply reaching the egress sink, for a uid whose session is not resident: claim + decode +
 *   handler. The warm-up runs on a first runtime, the timed uids on a second one, so the second
 *   runtime's `stats().sessions.loadLatency` covers exactly the timed loads.
 * - remote-get: `await storage.get(key)` (the raw round trip through the host thread).
 * - remote-claim: `await storage.claim(key, [key])` (what a load asks of storage, without the runtime).
 * Posts {t:'result', sample: Float64Array (µs), loadLatency?, errors}.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { createApp } from '@peony/worker'
import { WorkerRuntime } from '@peony/worker/host'
import { RemoteStorage } from '@peony/storage/remote'
import { packValue } from '@peony/protocol'
import { keyOf, STATE_BYTES, WORKER_INFO } from './common.mjs'

const { port, mode, warm, timed } = workerData.data
const post = (m) => parentPort.postMessage(m)

try {
  const storage = new RemoteStorage(port)
  await storage.open()
  const errors = []
  let loadLatency
  let sample
  if (mode === 'peony') {
    const app = createApp()
    const def = app.session({ initial: () => new Uint8Array(STATE_BYTES), dirty: 'manual' })
    app.route('hello', (req) => {
      if (def.of(req).state.byteLength !== STATE_BYTES) throw new Error('unexpected state')
      req.reply({ ok: 1 })
    })
    const body = packValue({ cmd: 'hello', sn: 1 })
    let waiting
    let current = 0
    let wrong = 0
    const egress = {
      send(msg, taskId) {
        const t = performance.now()
        if (msg.cmd === 220 && taskId === current && waiting !== undefined) {
          const w = waiting
          waiting = undefined
          w(t)
        } else wrong++
      },
    }
    const outcomes = {}
    const onTaskDone = (_id, outcome) => (outcomes[outcome] = (outcomes[outcome] ?? 0) + 1)
    let nextId = 1
    /** Requests each uid in turn on `runtime`; the latencies in µs. */
    const drive = async (runtime, uids) => {
      const s = new Float64Array(uids.length)
      for (let i = 0; i < uids.length; i++) {
        const uid = uids[i]
        current = nextId++
        const replied = new Promise((r) => (waiting = r))
        const t0 = performance.now()
        runtime.dispatch(current, { cmd: 10, uid, nodeId: 1, connId: uid, body })
        s[i] = ((await replied) - t0) * 1000
      }
      return s
    }
    const make = () => new WorkerRuntime({ app, info: WORKER_INFO, egress, onTaskDone, sessions: { storage } })
    const warmRt = make()
    await warmRt.start()
    await drive(warmRt, warm)
    await warmRt.stop()
    const rt = make()
    await rt.start()
    sample = await drive(rt, timed)
    await rt.stop()
    const st = rt.stats().sessions
    loadLatency = st.loadLatency
    if (st.loads !== timed.length || st.loadFailures !== 0) errors.push(`loads ${st.loads}, failures ${st.loadFailures}`)
    if (outcomes.ok !== warm.length + timed.length) errors.push(`outcomes ${JSON.stringify(outcomes)}`)
    if (wrong !== 0) errors.push(`${wrong} unexpected egress messages`)
    if (st.flushedSessions !== 0) errors.push(`${st.flushedSessions} sessions were written during the run`)
  } else {
    const call = mode === 'remote-get' ? (k) => storage.get(k) : async (k) => (await storage.claim(k, [k])).values[0]
    let missing = 0
    for (const uid of warm) if ((await call(keyOf(uid))) === undefined) missing++
    sample = new Float64Array(timed.length)
    for (let i = 0; i < timed.length; i++) {
      const k = keyOf(timed[i])
      const t0 = performance.now()
      const v = await call(k)
      sample[i] = (performance.now() - t0) * 1000
      if (v === undefined) missing++
    }
    if (missing > 0) errors.push(`${missing} keys missing`)
  }
  await storage.close()
  post({ t: 'result', sample, loadLatency, errors })
} catch (err) {
  post({ t: 'fatal', message: err?.message ?? String(err), stack: err?.stack })
}
