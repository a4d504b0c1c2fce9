/**
 * One run of one case of the session flush benchmark, in a fresh process (started by flush.mjs):
 *
 *   node --conditions=@peony/source --import tsx flush-case.mjs --case=<case> [--n=100000] [--chunk=500] [--write-buffer-size=0]
 *
 * Value: sessions (records) written per second, from the first write to the last acknowledgement.
 *
 * - level-peony: the production arrangement. A storage host thread opens a LevelStorage in a
 *   fresh directory and serves it (serveStorage) over a MessagePort; a worker thread runs a
 *   WorkerRuntime with a RemoteStorage on the other end (flush-thread.mjs), loads n sessions of a
 *   1,000-byte Uint8Array state, makes each dirty, and times `runtime.worker.sessions.flush()`.
 * - level-raw: classic-level in this process's main thread, a fresh directory, the same options
 *   as LevelStorage (utf8 keys, 'view' values): `await db.batch()` of `chunk` puts after another,
 *   of the same n keys and the same record bytes, serialized before timing. With `--encode=inside`
 *   (flush.mjs's `<driver>-raw-enc-<chunk>`, the like-for-like baseline) the n states (Uint8Arrays,
 *   as resident sessions hold them) are made before timing and each chunk's records are encoded
 *   inside the timed span, into one reused buffer (common.mjs encodeRecords), before its batch.
 * - redis-peony / redis-raw: the same with a RedisStorage in the host thread / a raw ioredis
 *   `pipeline([...chunk SETs]).exec()` in this thread, against a redis-server of this run's own
 *   (a child of this process, no persistence), keys as RedisStorage stores them (`--encode=inside`
 *   as for level-raw).
 *
 * Decomposition (the same records, serialized before timing, written with `writeFenced` in calls
 * of `chunk` one-op writes after every key was claimed; common.mjs fencedFlush):
 * - level-direct / redis-direct: a LevelStorage / RedisStorage in this thread;
 * - level-remote / redis-remote: the host thread and a worker thread with a RemoteStorage, as
 *   for Peony, but no runtime.
 *
 * - level-sketch / redis-sketch: a sketch of a cheaper flush, NOT what Peony does (common.mjs
 *   fencedFlush with encode 'sketch'): like -remote, but the records are encoded inside the timed
 *   span without a second allocation per session, and with `--inflight=2` the next call overlaps
 *   the previous one. For the analysis in docs/benchmarks.md; flush.mjs runs it with `--sketch`.
 * `--inflight=N` (remote, direct and sketch cases): writeFenced calls in flight (default 1).
 * `--flush-batch-size=N` (peony cases): the sessions' flushBatchSize (default: Peony's default).
 * `--warmup=N` (peony and raw cases; default 0, the target's method): before timing, N other
 * records are written the same way (Peony: N other players loaded and flushed; raw: N other keys
 * in the same batches or pipelines, encoded as the case encodes, then a 5 s pause: LevelDB's
 * flushes and compactions of the warm-up data settle outside the span, as they do on Peony's side
 * while the n sessions load), so the timed span does not run the write path's code for the first
 * time in the process.
 *
 * `--write-buffer-size` (bytes; 0 = classic-level's default, 4 MiB) is given to both LevelDB sides.
 * Prints one line `{"bench":"result", value, ...}`.
 */
import { join } from 'node:path'
import { MessageChannel } from 'node:worker_threads'
import { ClassicLevel } from 'classic-level'
import { Redis } from 'ioredis'
import { parseArgs } from '../lib/run.mjs'
import { MsgpackWriter } from '@peony/protocol'
import { LevelStorage } from '@peony/storage/leveldb'
import { RedisStorage } from '@peony/storage/redis'
import {
  HERE,
  caseDir,
  countMismatched,
  cpuSplit,
  emitResult as emit,
  encodeRecords,
  fencedFlush,
  keyOf,
  nextMessage,
  recordOf,
  startHost,
  startRedis,
  startThread,
  stateOf,
  threadId,
  threadTimes,
} from './common.mjs'

const args = parseArgs({ case: '', n: 100_000, chunk: 500, writeBufferSize: 0, inflight: 1, flushBatchSize: 0, encode: 'before', warmup: 0 })
if (args.encode !== 'before' && args.encode !== 'inside') throw new TypeError(`--encode must be before or inside, not ${args.encode}`)
const dir = caseDir()

const FIRST_UID = 100_001
/** After a raw warm-up: time for LevelDB's flushes and compactions of it to end before timing. */
const WARMUP_SETTLE_MS = 5000
const PREFIX = 'bench:'
const { n, chunk } = args
const wbs = args.writeBufferSize > 0 ? { writeBufferSize: args.writeBufferSize } : {}

/**
 * The n keys and records the raw baselines write, serialized before timing; with `--encode=inside`
 * also the states, and `chunkValues(i, end)` encodes the records of [i, end) (inside the timed
 * span) into one reused writer (undefined without: the loops index `values`, as they always did).
 */
function records(firstUid = FIRST_UID, count = n) {
  const keys = new Array(count)
  const values = new Array(count)
  const states = args.encode === 'inside' ? new Array(count) : undefined
  for (let i = 0; i < count; i++) {
    const uid = firstUid + i
    keys[i] = keyOf(uid)
    values[i] = recordOf(stateOf(uid))
    if (states !== undefined) states[i] = stateOf(uid)
  }
  const w = new MsgpackWriter(64 * 1024)
  const chunkValues = states === undefined ? undefined : (i, end) => encodeRecords(w, states, i, end)
  return { keys, values, chunkValues }
}

/** The Peony side: host thread + runtime thread; resolves with the runtime thread's result. */
async function peony(config, mode = 'peony', encode = 'before', procs = {}) {
  const { port1, port2 } = new MessageChannel()
  const host = await startHost(config, port1)
  const w = startThread(
    join(HERE, 'flush-thread.mjs'),
    { port: port2, n, firstUid: FIRST_UID, mode, chunk, inflight: args.inflight, encode, procs, flushBatchSize: args.flushBatchSize, warmup: args.warmup },
    [port2],
    'peony-worker',
  )
  const { t: _t, cpu, ...res } = await nextMessage(w, (m) => m.t === 'result', 600_000, 'the flush result')
  await w.terminate()
  await host.close()
  return { ...res, cpuMs: cpu === undefined ? undefined : cpuSplit(cpu.before, cpu.after, { [cpu.tid]: 'worker', [host.tid]: 'host', [MAIN]: 'main' }) }
}

/** This (main) thread's id. */
const MAIN = threadId()

/** A direct case's result with its CPU split (this thread: 'main'). */
function direct({ cpu, ...res }) {
  return { ...res, cpuMs: cpuSplit(cpu.before, cpu.after, { [cpu.tid]: 'main' }) }
}

let out
const c = args.case
if (c === 'level-peony') {
  out = await peony({ driver: 'leveldb', location: join(dir, 'db'), ...wbs })
} else if (c === 'level-remote' || c === 'level-sketch') {
  out = await peony({ driver: 'leveldb', location: join(dir, 'db'), ...wbs }, 'remote', c === 'level-sketch' ? 'sketch' : 'before')
} else if (c === 'level-direct') {
  const storage = new LevelStorage({ location: join(dir, 'db'), ...wbs })
  out = direct(await fencedFlush(storage, { n, firstUid: FIRST_UID, chunk, inflight: args.inflight }))
  await storage.close()
} else if (c === 'level-raw') {
  const { keys, values, chunkValues } = records()
  const db = new ClassicLevel(join(dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view', ...wbs })
  await db.open()
  const writeAll = async (keys, values, chunkValues, n) => {
    for (let i = 0; i < n; i += chunk) {
      const ops = []
      const end = Math.min(i + chunk, n)
      if (chunkValues === undefined) for (let j = i; j < end; j++) ops.push({ type: 'put', key: keys[j], value: values[j] })
      else {
        const vs = chunkValues(i, end)
        for (let j = i; j < end; j++) ops.push({ type: 'put', key: keys[j], value: vs[j - i] })
      }
      await db.batch(ops)
    }
  }
  if (args.warmup > 0) {
    const w = records(FIRST_UID + n, args.warmup)
    await writeAll(w.keys, w.values, w.chunkValues, args.warmup)
    await new Promise((r) => setTimeout(r, WARMUP_SETTLE_MS))
  }
  const cpuBefore = threadTimes()
  const t0 = performance.now()
  await writeAll(keys, values, chunkValues, n)
  const ms = performance.now() - t0
  const cpuMs = cpuSplit(cpuBefore, threadTimes(), { [MAIN]: 'main' })
  const mismatched = await countMismatched(
    keys,
    (ks) => db.getMany(ks),
    (i) => values[i],
  )
  await db.close()
  out = {
    value: n / (ms / 1000),
    ms,
    chunk,
    encode: args.encode,
    cpuMs,
    ok: mismatched === 0,
    errors: mismatched ? [`${mismatched} of ${n} records read back differ`] : [],
  }
} else if (c === 'redis-peony') {
  const server = await startRedis()
  try {
    out = await peony({ driver: 'redis', url: server.url, prefix: PREFIX }, 'peony', 'before', { redis: server.pid })
  } finally {
    await server.stop()
  }
} else if (c === 'redis-remote' || c === 'redis-sketch' || c === 'redis-direct') {
  const server = await startRedis()
  try {
    if (c !== 'redis-direct')
      out = await peony({ driver: 'redis', url: server.url, prefix: PREFIX }, 'remote', c === 'redis-sketch' ? 'sketch' : 'before', { redis: server.pid })
    else {
      const storage = new RedisStorage({ url: server.url, prefix: PREFIX })
      out = direct(await fencedFlush(storage, { n, firstUid: FIRST_UID, chunk, inflight: args.inflight, procs: { redis: server.pid } }))
      await storage.close()
    }
  } finally {
    await server.stop()
  }
} else if (c === 'redis-raw') {
  const server = await startRedis()
  const { keys, values, chunkValues } = records()
  // RedisStorage's layout: prefix + the key's first '/'-separated segment in a hash tag.
  const rkeys = keys.map((k) => `${PREFIX}{${k}}`)
  // ioredis sends Buffers as bytes (a plain Uint8Array would be stringified): views, no copy.
  const asBuffer = (v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength)
  const bufs = chunkValues === undefined ? values.map(asBuffer) : undefined
  const r = new Redis(server.url)
  await r.ping() // connected before timing
  const procs = { redis: server.pid }
  const writeAll = async (rkeys, bufs, chunkValues, n) => {
    for (let i = 0; i < n; i += chunk) {
      const cmds = []
      const end = Math.min(i + chunk, n)
      if (bufs !== undefined) for (let j = i; j < end; j++) cmds.push(['set', rkeys[j], bufs[j]])
      else {
        const vs = chunkValues(i, end)
        for (let j = i; j < end; j++) cmds.push(['set', rkeys[j], asBuffer(vs[j - i])])
      }
      const res = await r.pipeline(cmds).exec()
      for (const [err] of res) if (err) throw err
    }
  }
  if (args.warmup > 0) {
    const w = records(FIRST_UID + n, args.warmup)
    await writeAll(
      w.keys.map((k) => `${PREFIX}{${k}}`),
      w.chunkValues === undefined ? w.values.map(asBuffer) : undefined,
      w.chunkValues,
      args.warmup,
    )
    await new Promise((r) => setTimeout(r, WARMUP_SETTLE_MS))
  }
  const cpuBefore = threadTimes(procs)
  const t0 = performance.now()
  await writeAll(rkeys, bufs, chunkValues, n)
  const ms = performance.now() - t0
  const cpuMs = cpuSplit(cpuBefore, threadTimes(procs), { [MAIN]: 'main' })
  const mismatched = await countMismatched(
    rkeys,
    (ks) => r.mgetBuffer(ks),
    (i) => values[i],
  )
  r.disconnect()
  await server.stop()
  out = {
    value: n / (ms / 1000),
    ms,
    chunk,
    encode: args.encode,
    cpuMs,
    ok: mismatched === 0,
    errors: mismatched ? [`${mismatched} of ${n} records read back differ`] : [],
  }
} else {
  throw new TypeError(`unknown --case=${c}`)
}
emit({ ...out, case: c, warmup: args.warmup, writeBufferSize: args.writeBufferSize || 'default (4 MiB)' })
process.exit(0)
