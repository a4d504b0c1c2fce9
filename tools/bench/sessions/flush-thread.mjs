/**
 * The worker thread of the flush benchmark (flush-case.mjs): a WorkerRuntime whose sessions live
 * in a RemoteStorage over the MessagePort to the storage host thread, as
 * packages/master/src/thread/worker-main.ts builds it.
 *
 * The app: `app.session({ initial: () => new Uint8Array(1000) })` (dirty: 'auto', the default) and
 * one route that fills the state with the uid's bytes (common.mjs fillState). Every session
 * setting is the default except `maxUnflushedAgeMs`, which is huge so that nothing is written
 * before the timed flush.
 *
 * 1. n tasks, one per uid (1,000 in flight at a time): n sessions loaded (claimed) and dirty.
 * 2. Timed: `await runtime.worker.sessions.flush()` (n sessions written, in writeFenced calls of
 *    flushBatchSize, the default unless the case was given `--flush-batch-size`).
 * 3. Checks: n written, nothing dirty, every key written by exactly one op of the flush's
 *    writeFenced calls, and every record read back equal to the bytes the raw baselines write
 *    (common.mjs recordOf, recordWrites, countMismatched).
 * Posts {t:'result', value: sessions/s, ...}.
 *
 * With `warmup` > 0 (flush.mjs `--warmup`), before step 1: `warmup` other players (uids after
 * the n) loaded, made dirty and flushed, untimed, so the flush path's code has run once (a
 * process's first flush runs it cold: interpreted, then compiled on V8's threads); they stay
 * resident and clean, and their writes are not in the checks.
 *
 * With `mode: 'remote'` (cases level-remote / redis-remote, -sketch) no runtime runs: the thread
 * claims every session's key as a load does, then times RemoteStorage.writeFenced of the same
 * records in calls of 500 one-op writes (common.mjs fencedFlush, with `inflight` and `encode`).
 */
import { parentPort, workerData } from 'node:worker_threads'
import { createApp } from '@peony/worker'
import { WorkerRuntime } from '@peony/worker/host'
import { RemoteStorage } from '@peony/storage/remote'
import { packValue } from '@peony/protocol'
import { countMismatched, fencedFlush, fillState, keyOf, makeDriver, recordOf, recordWrites, stateOf, threadId, threadTimes, WORKER_INFO } from './common.mjs'

const { port, n, firstUid, mode = 'peony', chunk = 500, inflight = 1, encode = 'before', procs = {}, flushBatchSize, warmup = 0 } = workerData.data
const post = (m) => parentPort.postMessage(m)

try {
  post({ t: 'result', ...(mode === 'remote' ? await storagePath() : await peonyFlush()) })
} catch (err) {
  post({ t: 'fatal', message: err?.message ?? String(err), stack: err?.stack })
}

/** The storage path alone: what the flush asks of storage, without the runtime (common.mjs fencedFlush). */
async function storagePath() {
  const storage = new RemoteStorage(port)
  const res = await fencedFlush(storage, { n, firstUid, chunk, inflight, encode, procs })
  await storage.close()
  return res
}

/** Peony: load n sessions, make them dirty, time `runtime.worker.sessions.flush()`. */
async function peonyFlush() {
  const app = createApp()
  const def = app.session({ initial: () => new Uint8Array(1000) })
  app.route('fill', (req) => {
    fillState(req.uid, def.of(req).state)
  })
  const storage = new RemoteStorage(port)
  const recorded = recordWrites(storage)
  const driver = makeDriver()
  const runtime = new WorkerRuntime({
    app,
    info: WORKER_INFO,
    egress: { send() {} },
    onTaskDone: driver.track,
    sessions: { storage, maxUnflushedAgeMs: 1e12, ...(flushBatchSize ? { flushBatchSize } : {}) },
  })
  await runtime.start()
  const body = packValue({ cmd: 'fill', sn: 1 })
  if (warmup > 0) {
    const others = Array.from({ length: warmup }, (_, i) => firstUid + n + i)
    const done = await driver.run(runtime, others, (uid) => ({ cmd: 10, uid, body }), 1000)
    if (done.ok !== warmup) throw new Error(`warm-up: expected ${warmup} ok tasks, got ${JSON.stringify(done)}`)
    const w = await runtime.worker.sessions.flush()
    if (w.written !== warmup) throw new Error(`warm-up flush wrote ${w.written} of ${warmup}`)
    recorded.calls.length = 0
  }
  const base = runtime.stats().sessions
  const uids = Array.from({ length: n }, (_, i) => firstUid + i)
  const tLoad = performance.now()
  const outcomes = await driver.run(runtime, uids, (uid) => ({ cmd: 10, uid, body }), 1000)
  const loadMs = performance.now() - tLoad
  if (outcomes.ok !== n + warmup) throw new Error(`loading: expected ${n} ok tasks, got ${JSON.stringify(outcomes)}`)
  const before = runtime.stats().sessions
  if (before.dirty !== n || before.resident !== n + warmup || before.flushedSessions !== base.flushedSessions)
    throw new Error(`before the flush: ${JSON.stringify(before)}`)

  // The flush's span on the monotonic clock V8's CPU profiles use (µs), for profile-window.mjs.
  const windowStartUs = Number(process.hrtime.bigint() / 1000n)
  const cpuBefore = threadTimes(procs)
  const t0 = performance.now()
  const res = await runtime.worker.sessions.flush()
  const ms = performance.now() - t0
  const cpu = { before: cpuBefore, after: threadTimes(procs), tid: threadId() }
  const windowEndUs = Number(process.hrtime.bigint() / 1000n)

  const after = runtime.stats().sessions
  const errors = []
  if (res.written !== n || res.dirty !== 0) errors.push(`flush wrote ${res.written}, ${res.dirty} still dirty`)
  if (after.flushErrors !== 0 || after.fenced !== 0) errors.push(`flush errors ${after.flushErrors}, fenced ${after.fenced}`)
  // Every record written by exactly one op of the flush's calls, and each read back equal to the
  // bytes the raw baselines write.
  const keys = uids.map(keyOf)
  errors.push(...recorded.check(keys))
  const mismatched = await countMismatched(
    keys,
    (ks) => storage.getMany(ks),
    (i) => recordOf(stateOf(uids[i])),
  )
  if (mismatched > 0) errors.push(`${mismatched} of ${n} records read back differ from the baseline's bytes`)
  await runtime.stop()
  await storage.close()
  return {
    value: n / (ms / 1000),
    ms,
    loadMs,
    flushes: after.flushes - base.flushes,
    warmup,
    written: res.written,
    recordBytes: recordOf(stateOf(uids[0])).byteLength,
    loadLatency: after.loadLatency,
    windowUs: [windowStartUs, windowEndUs],
    cpu,
    ok: errors.length === 0,
    errors,
  }
}
