/**
 * What the session benchmarks share (docs/benchmarks.md, "Sessions"): the 1,000-byte state and
 * the exact record bytes Peony writes for it, the storage key of a uid, a redis-server of the
 * run's own, and the storage host and runtime threads of the production arrangement.
 *
 * Loaded under the source flags (`--conditions=@peony/source --import tsx`), like the rest of the
 * suite's Peony side.
 */
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { packValue } from '@peony/protocol'
import { startRedis } from '../lib/redis.mjs'
export { startRedis }

export const HERE = path.dirname(fileURLToPath(import.meta.url))

/** The identity of the one WorkerRuntime of a session benchmark's thread. */
export const WORKER_INFO = Object.freeze({ slot: 0, groupId: 1, index: 0, serverId: 'bench', generation: 0 })

/** Prints a case's one result line, `{"bench":"result", …}`, which lib/run.mjs waits for. */
export const emitResult = (o) => process.stdout.write(`${JSON.stringify({ bench: 'result', ...o })}\n`)

/**
 * Time on a CPU (ms) of every thread of this process so far, by thread id, from Linux's
 * /proc/self/task/<tid>/schedstat (nanoseconds, unlike the 10 ms ticks of /proc/<tid>/stat);
 * `{}` where there is no /proc. Two snapshots around a span give each thread's CPU time in it,
 * which other processes on the machine inflate far less than they inflate wall time.
 * `procs` (name → pid) adds the main thread of other processes (a redis-server) as `proc:<name>`.
 * @param {Record<string, number | undefined>} [procs]
 * @returns {Record<string, number>}
 */
export function threadTimes(procs = {}) {
  const out = {}
  for (const [name, pid] of Object.entries(procs)) {
    try {
      if (pid !== undefined) out[`proc:${name}`] = Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6
    } catch {
      // gone, or no /proc
    }
  }
  try {
    for (const t of readdirSync('/proc/self/task')) {
      try {
        out[t] = Number(readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ')[0]) / 1e6
      } catch {
        // the thread ended meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return out
}

/** The calling thread's id (Linux), to name it in a threadTimes() split; undefined elsewhere. */
export function threadId() {
  try {
    return readlinkSync('/proc/thread-self').split('/').pop()
  } catch {
    return undefined
  }
}

/**
 * CPU ms per thread role between two threadTimes() snapshots: `roles` maps thread id → role
 * ('main', 'host', 'worker'); every other thread (libuv's pool doing LevelDB's writes, LevelDB's
 * compaction thread, V8's GC helpers) counts as 'other'; a process `proc:<name>` as `<name>`
 * (not in 'total', which is this process's). Rounded to 0.1 ms.
 * @param {Record<string, number>} before
 * @param {Record<string, number>} after
 * @param {Record<string, string>} roles
 */
export function cpuSplit(before, after, roles) {
  const out = { total: 0, other: 0 }
  for (const r of Object.values(roles)) out[r] = 0
  const others = []
  for (const [t, ms] of Object.entries(after)) {
    const d = ms - (before[t] ?? 0)
    if (t.startsWith('proc:')) {
      out[t.slice(5)] = d
      continue
    }
    const r = roles[t] ?? 'other'
    out[r] += d
    out.total += d
    if (r === 'other' && d >= 1) others.push(d)
  }
  for (const k of Object.keys(out)) out[k] = Math.round(out[k] * 10) / 10
  // The busiest 'other' threads, each on its own (a LevelDB write thread, its compaction thread…).
  out.others = others
    .sort((a, b) => b - a)
    .slice(0, 6)
    .map((d) => Math.round(d))
  return out
}

/** A fresh temporary directory of this process, removed when it exits. */
export function caseDir(prefix = 'peony-bench-sessions-') {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * Paces events at `perSecond` from `startAt` until `endAt` (`performance.now()` ms): sleeps
 * until the next is due (a timer: ≥ 1 ms), then calls `onDue(n, now)` with the n events due by
 * now. More than 5 ms behind schedule (the thread was not scheduled), it skips the lost time
 * instead of handing over a burst, as lib/sender.mjs does. Resolves with the time skipped and
 * how often.
 * @param {number} perSecond
 * @param {number} startAt
 * @param {number} endAt
 * @param {(n: number, now: number) => void} onDue
 */
export async function pace(perSecond, startAt, endAt, onDue) {
  const gap = 1000 / perSecond
  let next = startAt
  let skippedMs = 0
  let late = 0
  for (;;) {
    let now = performance.now()
    if (next > now) {
      await new Promise((r) => setTimeout(r, Math.max(1, Math.floor(next - now))))
      now = performance.now()
    }
    if (now >= endAt) break
    if (now - next > 5) {
      skippedMs += now - next
      late++
      next = now
    }
    let n = 0
    while (next <= now) {
      n++
      next += gap
    }
    onDue(n, now)
  }
  return { skippedMs, late }
}

/** Bytes of the benchmark's session state (a Uint8Array). */
export const STATE_BYTES = 1000

/** The storage key of a uid's session with the default namespace: `player:<uid>` (docs/sessions.md). */
export const keyOf = (uid) => `player:${uid}`

/**
 * Fills `u8` (a state of STATE_BYTES bytes at offset 0) with xorshift32 bytes seeded by the uid:
 * the same uid always gives the same bytes, and LevelDB's snappy cannot shrink them.
 * @param {number} uid
 * @param {Uint8Array} u8
 */
export function fillState(uid, u8) {
  const w = new Uint32Array(u8.buffer, u8.byteOffset, u8.byteLength >>> 2)
  const next = xorshift32(uid * 2654435761)
  for (let i = 0; i < w.length; i++) w[i] = next()
  return u8
}

/**
 * A seeded xorshift32 generator: `next()` gives the next uint32 (never 0). The same seed gives
 * the same sequence in every run and case.
 * @param {number} seed
 */
export function xorshift32(seed) {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x
  }
}

/**
 * Shuffles `a` in place (Fisher–Yates driven by xorshift32(seed)) and returns it: the same seed
 * gives the same order in every run and case.
 * @template {{length: number, [i: number]: any}} A
 * @param {A} a
 * @param {number} seed
 * @returns {A}
 */
export function shuffle(a, seed) {
  const next = xorshift32(seed)
  for (let i = a.length - 1; i > 0; i--) {
    const j = next() % (i + 1)
    const t = a[i]
    a[i] = a[j]
    a[j] = t
  }
  return a
}

/** The state of `uid`: a filled Uint8Array(STATE_BYTES). */
export const stateOf = (uid) => fillState(uid, new Uint8Array(STATE_BYTES))

/**
 * The record Peony writes for a session whose state is `state` with the default encode and no
 * durable timers: msgpack `[1, bin32(packValue(state)), nil]` (session-record.ts writeRecord), 1,011
 * bytes for a 1,000-byte Uint8Array.
 * @param {Uint8Array} state
 */
export function recordOf(state) {
  const inner = packValue(state)
  const out = new Uint8Array(7 + inner.length + 1)
  out[0] = 0x93 // fixarray(3)
  out[1] = 0x01 // record version
  out[2] = 0xc6 // bin32: Peony patches the length after packing the state in place
  new DataView(out.buffer).setUint32(3, inner.length)
  out.set(inner, 7)
  out[7 + inner.length] = 0xc0 // no durable timers
  return out
}

/**
 * Encodes the records of `states[from..to)` into `w` (a MsgpackWriter, reset first), as the
 * session manager writes them (`[1, bin32(packValue(state)), nil]`, the state packed in place, its
 * length patched afterwards: recordOf's bytes), and returns them as views of its buffer. What the
 * encode-inside raw baselines (`<driver>-raw-enc-<chunk>`) do in their timed span: the work any
 * write-back of these states must do before handing bytes to the library.
 * @param {import('@peony/protocol').MsgpackWriter} w
 * @param {Uint8Array[]} states
 * @param {number} from
 * @param {number} to
 */
export function encodeRecords(w, states, from, to) {
  w.reset()
  const ends = new Array(to - from)
  for (let j = from; j < to; j++) {
    w.ensure(7)
    const b = w.buf
    b[w.pos++] = 0x93 // fixarray(3)
    b[w.pos++] = 0x01 // record version
    b[w.pos++] = 0xc6 // bin32
    const lenAt = w.pos
    w.pos += 4
    w.value(states[j])
    w.view.setUint32(lenAt, w.pos - lenAt - 4)
    w.nil()
    ends[j - from] = w.pos
  }
  // Views only now: the buffer may have been replaced while it grew.
  const out = new Array(to - from)
  let start = 0
  for (let k = 0; k < out.length; k++) {
    out[k] = w.buf.subarray(start, ends[k])
    start = ends[k]
  }
  return out
}

/**
 * Starts a thread that registers tsx (as the master's boot.mjs does) and runs `entry` with
 * `workerData.data`. Resolves with the Worker; its messages are the caller's business.
 * @param {string} entry absolute path of the thread's module
 * @param {object} data
 * @param {Transferable[]} [transfer]
 * @param {string} [name]
 */
export function startThread(entry, data, transfer = [], name = 'bench') {
  return new Worker(path.join(HERE, 'thread-boot.mjs'), {
    workerData: { entry, data },
    transferList: transfer,
    // Profiles of the threads too when this process is profiled (flush.mjs --prof).
    execArgv: ['--conditions=@peony/source', ...process.execArgv.filter((a) => a.startsWith('--cpu-prof'))],
    name,
  })
}

/** Resolves with the thread's next message that satisfies `pred`; rejects if it errors or exits first. */
export function nextMessage(worker, pred = () => true, timeoutMs = 120_000, what = 'a message') {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs)
    const onMessage = (m) => {
      if (m?.t === 'fatal') done(new Error(`thread failed: ${m.message}\n${m.stack ?? ''}`))
      else if (pred(m)) done(undefined, m)
    }
    const onError = (e) => done(e)
    const onExit = (code) => done(new Error(`thread exited (${code}) while waiting for ${what}`))
    function done(err, m) {
      clearTimeout(timer)
      worker.off('message', onMessage)
      worker.off('error', onError)
      worker.off('exit', onExit)
      if (err) reject(err)
      else resolve(m)
    }
    worker.on('message', onMessage)
    worker.on('error', onError)
    worker.on('exit', onExit)
  })
}

/**
 * Reads every one of `keys` back (after timing; `getMany` in calls of 1,000) and counts those
 * that are missing or differ from `want(i)`, byte for byte.
 * @param {string[]} keys
 * @param {(keys: string[]) => Promise<(Uint8Array | undefined | null)[]>} getMany
 * @param {(i: number) => Uint8Array} want
 */
export async function countMismatched(keys, getMany, want) {
  let bad = 0
  for (let i = 0; i < keys.length; i += 1000) {
    const got = await getMany(keys.slice(i, i + 1000))
    for (let j = 0; j < got.length; j++) {
      const g = got[j]
      const w = want(i + j)
      if (
        g === undefined ||
        g === null ||
        Buffer.compare(Buffer.from(g.buffer, g.byteOffset, g.byteLength), Buffer.from(w.buffer, w.byteOffset, w.byteLength)) !== 0
      )
        bad++
    }
  }
  return bad
}

/**
 * Wraps `storage.writeFenced` to keep every call's writes (the array, not a copy: cheap inside
 * the timed span); `check(keys)` then tells whether every key was written by exactly one op of
 * one accepted call and nothing else was written.
 * @param {import('@peony/storage').AbstractStorage} storage
 */
export function recordWrites(storage) {
  const calls = []
  const orig = storage.writeFenced.bind(storage)
  storage.writeFenced = (writes) => {
    calls.push(writes)
    return orig(writes)
  }
  return {
    calls,
    /** Problems found (empty: each of `keys` written exactly once, nothing else). */
    check(keys) {
      const count = new Map()
      for (const writes of calls) for (const w of writes) for (const op of w.ops) count.set(op.key, (count.get(op.key) ?? 0) + 1)
      const problems = []
      const twice = [...count].filter(([, c]) => c > 1).length
      const missing = keys.filter((k) => !count.has(k)).length
      const extra = count.size - (keys.length - missing)
      if (twice > 0) problems.push(`${twice} keys written more than once`)
      if (missing > 0) problems.push(`${missing} keys never written`)
      if (extra > 0) problems.push(`${extra} unexpected keys written`)
      return problems
    },
  }
}

/** The key prefix of the sessions benchmarks' RedisStorage. */
export const REDIS_PREFIX = 'bench:'

/**
 * The storage host's config for `driver`: a LevelStorage in `<dir>/db` (with `level`'s options),
 * or a RedisStorage (prefix REDIS_PREFIX) on a redis-server of this process's own, started
 * here; `stop()` stops that server.
 * @param {'level'|'redis'} driver
 * @param {string} dir
 * @param {{writeBufferSize?: number}} [level]
 */
export async function hostConfig(driver, dir, level = {}) {
  if (driver === 'level') return { config: { driver: 'leveldb', location: path.join(dir, 'db'), ...level }, stop: async () => {} }
  const server = await startRedis()
  return { config: { driver: 'redis', url: server.url, prefix: REDIS_PREFIX }, stop: () => server.stop() }
}

/**
 * The storage host thread (host-thread.mjs) serving `port`: LevelDB at `location` or Redis at
 * `url` with `prefix`. Resolves once the storage is open.
 * @param {{driver: 'leveldb'|'redis', location?: string, url?: string, prefix?: string, writeBufferSize?: number}} config
 * @param {import('node:worker_threads').MessagePort} port
 */
export async function startHost(config, port) {
  const w = startThread(path.join(HERE, 'host-thread.mjs'), { config, port }, [port], 'peony-storage')
  const ready = await nextMessage(w, (m) => m.t === 'ready', 60_000, 'the storage host to open')
  return {
    worker: w,
    /** The host thread's id (threadTimes). */
    tid: ready.tid,
    async close() {
      w.postMessage({ t: 'close' })
      await nextMessage(w, (m) => m.t === 'closed', 60_000, 'the storage host to close')
      await w.terminate()
    },
  }
}

/**
 * A driver of a runtime: `track` must be the runtime's onTaskDone; `run(runtime, uids, taskOf,
 * window)` dispatches one task per uid, at most `window` unsettled at a time, and resolves with
 * the outcome counts so far once all of them settled.
 */
export function makeDriver() {
  let settled = 0
  const outcomes = {}
  let wake = () => {}
  return {
    track(_id, outcome) {
      settled++
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
      wake()
    },
    /**
     * @param {{dispatch(id: number, task: object): void}} runtime
     * @param {number[]} uids
     * @param {(uid: number) => object} taskOf
     * @param {number} window
     */
    async run(runtime, uids, taskOf, window) {
      const start = settled
      let sent = 0
      for (;;) {
        while (sent < uids.length && sent - (settled - start) < window) {
          runtime.dispatch(start + sent + 1, taskOf(uids[sent]))
          sent++
        }
        if (settled - start >= uids.length) break
        // Tasks may settle inside dispatch; wait only when the window is full.
        if (sent < uids.length && sent - (settled - start) < window) continue
        await new Promise((r) => (wake = r))
      }
      return { ...outcomes }
    },
  }
}

/**
 * Claims `player:<uid>` for every uid, 1,000 claims in flight at a time, as session loads do;
 * resolves with the fencing generations, in the order of `uids`.
 * @param {import('@peony/storage').AbstractStorage} storage
 * @param {ArrayLike<number>} uids
 */
export async function claimKeys(storage, uids) {
  const gens = new Array(uids.length)
  for (let i = 0; i < uids.length; i += 1000) {
    const part = await Promise.all(Array.from({ length: Math.min(1000, uids.length - i) }, (_, j) => storage.claim(keyOf(uids[i + j]), [keyOf(uids[i + j])])))
    part.forEach((c, j) => (gens[i + j] = c.generation))
  }
  return gens
}

/**
 * The storage side of a flush without the session manager: claims `player:<uid>` for n uids
 * (1,000 at a time, as loads do; not timed), then times `storage.writeFenced` of their records in
 * calls of `chunk` one-op writes (as the session manager's flush does). Checks nothing was
 * refused and reads every record back.
 *
 * - `encode: 'before'` (the decomposition cases): records serialized before timing; `inflight: 1`,
 *   one call after another, as Peony's flush does.
 * - `encode: 'sketch'` (a sketch of a cheaper flush, not what Peony does): the states (Uint8Arrays,
 *   as resident sessions hold them) are encoded inside the timed span, each with `packValue`
 *   (the definition's default encode, one allocation), and the record around it is written
 *   straight into one buffer per call (`[1, bin(state bytes), nil]`, the same bytes as
 *   recordOf) instead of a second exact-size allocation per session; with `inflight: 2` the next
 *   call is encoded and sent while the previous one is being written.
 * @param {import('@peony/storage').AbstractStorage} storage an open (or openable) storage
 * `procs`: other processes whose CPU time to report too (common.mjs threadTimes).
 * @param {{n: number, firstUid: number, chunk: number, inflight?: number, encode?: 'before'|'sketch', procs?: Record<string, number>}} o
 */
export async function fencedFlush(storage, { n, firstUid, chunk, inflight = 1, encode = 'before', procs = {} }) {
  await storage.open()
  const gens = await claimKeys(
    storage,
    Array.from({ length: n }, (_, i) => firstUid + i),
  )
  const values = encode === 'before' ? Array.from({ length: n }, (_, i) => recordOf(stateOf(firstUid + i))) : undefined
  const states = encode === 'sketch' ? Array.from({ length: n }, (_, i) => stateOf(firstUid + i)) : undefined
  let refused = 0
  const pending = []
  const windowStartUs = Number(process.hrtime.bigint() / 1000n)
  const cpuBefore = threadTimes(procs)
  const t0 = performance.now()
  for (let i = 0; i < n; i += chunk) {
    const end = Math.min(i + chunk, n)
    const writes = []
    if (values !== undefined) {
      for (let j = i; j < end; j++)
        writes.push({ fence: keyOf(firstUid + j), generation: gens[j], ops: [{ type: 'put', key: keyOf(firstUid + j), value: values[j] }] })
    } else {
      const encoded = []
      let total = 0
      for (let j = i; j < end; j++) {
        const e = packValue(states[j])
        encoded.push(e)
        total += e.byteLength + 7
      }
      const slab = Buffer.allocUnsafeSlow(total)
      let off = 0
      for (let j = i; j < end; j++) {
        const e = encoded[j - i]
        const start = off
        slab[off++] = 0x93 // array of 3
        slab[off++] = 0x01 // record version 1
        if (e.byteLength < 0x100) {
          slab[off++] = 0xc4
          slab[off++] = e.byteLength
        } else if (e.byteLength < 0x10000) {
          slab[off++] = 0xc5
          slab.writeUInt16BE(e.byteLength, off)
          off += 2
        } else {
          slab[off++] = 0xc6
          slab.writeUInt32BE(e.byteLength, off)
          off += 4
        }
        slab.set(e, off)
        off += e.byteLength
        slab[off++] = 0xc0 // no durable timers
        writes.push({ fence: keyOf(firstUid + j), generation: gens[j], ops: [{ type: 'put', key: keyOf(firstUid + j), value: slab.subarray(start, off) }] })
      }
    }
    pending.push(storage.writeFenced(writes))
    if (pending.length >= inflight) refused += (await pending.shift()).refused.length
  }
  for (const p of pending) refused += (await p).refused.length
  const ms = performance.now() - t0
  const cpu = { before: cpuBefore, after: threadTimes(procs), tid: threadId() }
  const windowUs = [windowStartUs, Number(process.hrtime.bigint() / 1000n)]
  const keys = Array.from({ length: n }, (_, i) => keyOf(firstUid + i))
  const mismatched = await countMismatched(
    keys,
    (ks) => storage.getMany(ks),
    (i) => values?.[i] ?? recordOf(stateOf(firstUid + i)),
  )
  const errors = []
  if (refused > 0) errors.push(`${refused} writes refused`)
  if (mismatched > 0) errors.push(`${mismatched} of ${n} records read back differ`)
  return { value: n / (ms / 1000), ms, chunk, inflight, encode, windowUs, cpu, ok: errors.length === 0, errors }
}
