/**
 * One run of one storage benchmark case, in a fresh process (started by storage.mjs with the
 * source flags). Prints one JSON line `{"bench":"result", value, ...}` on stdout.
 *
 *   node --conditions=@peony/source --import tsx case.mjs --case=<name> --n=100000 --size=1024 --chunk=1000 [--wps=256] [--reads=20000]
 *
 * Flush cases (value: values written per second, timed from the first chunk to the last ack;
 * values are pre-serialized, random, so snappy cannot shrink them):
 *   level-raw       classic-level db.batch() of `chunk` puts, awaited one after another
 *   level-fenced    LevelStorage.writeFenced of `chunk` writes (one 1-op write per session), same thread
 *   level-remote    the same from a worker thread through RemoteStorage to this thread's LevelStorage
 *   redis-raw       ioredis pipeline of `chunk` SETs, exec'd one after another
 *   redis-fenced    RedisStorage.writeFenced of `chunk` writes (`--wps` writes per script call)
 * Latency cases (value: p50 µs of an awaited call on a random existing key; the DB holds n values,
 * written, closed and reopened before the reads; `reads` samples after 1000 warm-up calls):
 *   get-level-raw, get-level-direct, get-level-remote, get-level-remote-sync (host with readSync),
 *   get-redis-raw, get-redis-direct: get(key)
 *   claim-level-direct, claim-level-remote, claim-redis-direct: claim(fence, [key]) of a fence
 *   not claimed before (a session load: new generation persisted, state read)
 * Redis cases start their own redis-server on a free port (a child of this process, so its CPU
 * counts as the run's own) and stop it at the end.
 */
import { randomFillSync } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MessageChannel, Worker } from 'node:worker_threads'
import { ClassicLevel } from 'classic-level'
import { Redis } from 'ioredis'
import { LevelStorage, RedisStorage } from '@peony/storage'
import { serveStorage } from '@peony/storage/remote'
import { parseArgs } from '../lib/run.mjs'
import { latencySummary } from '../lib/stats.mjs'
import { startRedis } from '../lib/redis.mjs'

const args = parseArgs({ case: '', n: 100_000, size: 1024, chunk: 1000, reads: 20_000, wps: 256 })
const emit = (o) => process.stdout.write(`${JSON.stringify({ bench: 'result', ...o })}\n`)
const dir = mkdtempSync(join(tmpdir(), 'peony-bench-storage-'))
process.on('exit', () => rmSync(dir, { recursive: true, force: true }))

/** n distinct random values of `size` bytes, in one backing buffer (made before timing). */
function makeValues(n, size) {
  const all = randomFillSync(Buffer.allocUnsafe(n * size))
  return Array.from({ length: n }, (_, i) => all.subarray(i * size, (i + 1) * size))
}

const keyOf = (i) => `u${i}/state`
const fenceOf = (i) => `u${i}`

/** Acquires every session's fence (not timed), 1000 at a time. */
async function acquireAll(storage, n) {
  const gens = new Array(n)
  for (let i = 0; i < n; i += 1000) {
    const part = await Promise.all(Array.from({ length: Math.min(1000, n - i) }, (_, j) => storage.acquire(fenceOf(i + j))))
    part.forEach((g, j) => (gens[i + j] = g))
  }
  return gens
}

/** Times the fenced flush of all n sessions in chunks; returns values/s and checks nothing was refused. */
async function fencedFlush(storage, values, gens, chunk) {
  const n = values.length
  let refused = 0
  const t0 = performance.now()
  for (let i = 0; i < n; i += chunk) {
    const writes = []
    for (let j = i; j < Math.min(i + chunk, n); j++)
      writes.push({ fence: fenceOf(j), generation: gens[j], ops: [{ type: 'put', key: keyOf(j), value: values[j] }] })
    refused += (await storage.writeFenced(writes)).refused.length
  }
  const ms = performance.now() - t0
  return { value: n / (ms / 1000), ms, refused, ok: refused === 0 }
}

/** Distinct random session indexes: 1000 for warming up, then `reads` for the sample. */
function order(n, reads) {
  const idx = Int32Array.from({ length: n }, (_, i) => i)
  for (let i = 0; i < Math.min(n - 1, reads + 1000); i++) {
    const j = i + ((Math.random() * (n - i)) | 0)
    ;[idx[i], idx[j]] = [idx[j], idx[i]]
  }
  return idx
}

/** Times `call(i)` (resolving with a value, undefined = missing) for `reads` random sessions. */
async function sampleCalls(call, n, reads) {
  const idx = order(n, reads)
  for (let i = 0; i < 1000; i++) await call(idx[i]) // warm the code paths
  const sample = new Float64Array(reads)
  let missing = 0
  for (let r = 0; r < reads; r++) {
    const i = idx[1000 + r]
    const t = performance.now()
    const v = await call(i)
    sample[r] = (performance.now() - t) * 1000
    if (v === undefined) missing++
  }
  const s = latencySummary(sample)
  return { value: s.p50, p50: s.p50, p99: s.p99, p999: s.p999, missing, ok: missing === 0 }
}
const getCall = (storage) => (i) => storage.get(keyOf(i))
const claimCall = (storage) => async (i) => (await storage.claim(fenceOf(i), [keyOf(i)])).values[0]

/** Fills a fresh LevelDB with n values (raw, chunks of 1000), closes it. */
async function fillLevel(location, values) {
  const db = new ClassicLevel(location, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open()
  for (let i = 0; i < values.length; i += 1000) await db.batch(values.slice(i, i + 1000).map((value, j) => ({ type: 'put', key: keyOf(i + j), value })))
  await db.close()
}

/** Runs `fn(port)` in a worker thread (the remote client) and resolves with what it posts. */
function inWorker(code, workerData, port) {
  const src = `
    const { register } = await import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}); register()
    const { workerData, parentPort } = await import('node:worker_threads')
    const { RemoteStorage } = await import('@peony/storage/remote')
    const { latencySummary } = await import(${JSON.stringify(new URL('../lib/stats.mjs', import.meta.url).href)})
    const storage = new RemoteStorage(workerData.port)
    await storage.open()
    ${code}
  `
  const w = new Worker(src, { eval: true, workerData: { ...workerData, port }, transferList: [port], execArgv: ['--conditions=@peony/source'] })
  return new Promise((resolve, reject) => {
    w.once('message', (m) => {
      resolve(m)
      void w.terminate()
    })
    w.once('error', reject)
  })
}

const c = args.case
const { n, size, chunk } = args
let out
if (c === 'level-raw') {
  const values = makeValues(n, size)
  const db = new ClassicLevel(join(dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open()
  const t0 = performance.now()
  for (let i = 0; i < n; i += chunk) {
    const ops = []
    for (let j = i; j < Math.min(i + chunk, n); j++) ops.push({ type: 'put', key: keyOf(j), value: values[j] })
    await db.batch(ops)
  }
  const ms = performance.now() - t0
  await db.close()
  out = { value: n / (ms / 1000), ms }
} else if (c === 'level-fenced') {
  const values = makeValues(n, size)
  const s = new LevelStorage({ location: join(dir, 'db') })
  await s.open()
  const gens = await acquireAll(s, n)
  out = await fencedFlush(s, values, gens, chunk)
  await s.close()
} else if (c === 'level-remote') {
  const s = new LevelStorage({ location: join(dir, 'db') })
  await s.open()
  const { port1, port2 } = new MessageChannel()
  serveStorage(s, port1)
  out = await inWorker(
    `
    const { n, size, chunk } = workerData
    const { randomFillSync } = await import('node:crypto')
    const all = randomFillSync(Buffer.allocUnsafe(n * size))
    const values = Array.from({ length: n }, (_, i) => all.subarray(i * size, (i + 1) * size))
    const gens = new Array(n)
    for (let i = 0; i < n; i += 1000) (await Promise.all(Array.from({ length: Math.min(1000, n - i) }, (_, j) => storage.acquire('u' + (i + j))))).forEach((g, j) => (gens[i + j] = g))
    let refused = 0
    const t0 = performance.now()
    for (let i = 0; i < n; i += chunk) {
      const writes = []
      for (let j = i; j < Math.min(i + chunk, n); j++) writes.push({ fence: 'u' + j, generation: gens[j], ops: [{ type: 'put', key: 'u' + j + '/state', value: values[j] }] })
      refused += (await storage.writeFenced(writes)).refused.length
    }
    const ms = performance.now() - t0
    parentPort.postMessage({ value: n / (ms / 1000), ms, refused, ok: refused === 0 })
    `,
    { n, size, chunk },
    port2,
  )
  await s.close()
} else if (c === 'redis-raw') {
  const server = await startRedis()
  const values = makeValues(n, size)
  const r = new Redis(server.url)
  const t0 = performance.now()
  for (let i = 0; i < n; i += chunk) {
    const cmds = []
    for (let j = i; j < Math.min(i + chunk, n); j++) cmds.push(['set', `{${fenceOf(j)}}/state`, values[j]])
    const res = await r.pipeline(cmds).exec()
    for (const [err] of res) if (err) throw err
  }
  const ms = performance.now() - t0
  r.disconnect()
  await server.stop()
  out = { value: n / (ms / 1000), ms }
} else if (c === 'redis-fenced') {
  const server = await startRedis()
  const values = makeValues(n, size)
  const s = new RedisStorage({ url: server.url, writesPerScript: args.wps })
  await s.open()
  const gens = await acquireAll(s, n)
  out = { ...(await fencedFlush(s, values, gens, chunk)), wps: args.wps }
  await s.close()
  await server.stop()
} else if (c === 'get-level-raw' || c === 'get-level-direct' || c === 'claim-level-direct') {
  await fillLevel(join(dir, 'db'), makeValues(n, size))
  if (c === 'get-level-raw') {
    const db = new ClassicLevel(join(dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'view' })
    await db.open()
    out = await sampleCalls((i) => db.get(keyOf(i)), n, args.reads)
    await db.close()
  } else {
    const s = new LevelStorage({ location: join(dir, 'db') })
    await s.open()
    out = await sampleCalls(c === 'get-level-direct' ? getCall(s) : claimCall(s), n, args.reads)
    await s.close()
  }
} else if (c === 'get-level-remote' || c === 'get-level-remote-sync' || c === 'claim-level-remote') {
  await fillLevel(join(dir, 'db'), makeValues(n, size))
  const s = new LevelStorage({ location: join(dir, 'db'), readSync: c === 'get-level-remote-sync' })
  await s.open()
  const { port1, port2 } = new MessageChannel()
  serveStorage(s, port1)
  out = await inWorker(
    `
    const { n, reads, op } = workerData
    const idx = Int32Array.from({ length: n }, (_, i) => i)
    for (let i = 0; i < Math.min(n - 1, reads + 1000); i++) { const j = i + ((Math.random() * (n - i)) | 0); const t = idx[i]; idx[i] = idx[j]; idx[j] = t }
    const call = op === 'claim' ? async (i) => (await storage.claim('u' + i, ['u' + i + '/state'])).values[0] : (i) => storage.get('u' + i + '/state')
    for (let i = 0; i < 1000; i++) await call(idx[i])
    const sample = new Float64Array(reads)
    let missing = 0
    for (let r = 0; r < reads; r++) {
      const i = idx[1000 + r]
      const t = performance.now()
      const v = await call(i)
      sample[r] = (performance.now() - t) * 1000
      if (v === undefined) missing++
    }
    const s = latencySummary(sample)
    parentPort.postMessage({ value: s.p50, p50: s.p50, p99: s.p99, p999: s.p999, missing, ok: missing === 0 })
    `,
    { n, reads: args.reads, op: c.startsWith('claim') ? 'claim' : 'get' },
    port2,
  )
  await s.close()
} else if (c === 'get-redis-raw' || c === 'get-redis-direct' || c === 'claim-redis-direct') {
  const server = await startRedis()
  const values = makeValues(n, size)
  const r = new Redis(server.url)
  for (let i = 0; i < n; i += 1000) await r.pipeline(values.slice(i, i + 1000).map((v, j) => ['set', `{${fenceOf(i + j)}}/state`, v])).exec()
  if (c === 'get-redis-raw') {
    out = await sampleCalls(async (i) => (await r.getBuffer(`{${fenceOf(i)}}/state`)) ?? undefined, n, args.reads)
  } else {
    const s = new RedisStorage({ url: server.url })
    await s.open()
    out = await sampleCalls(c === 'get-redis-direct' ? getCall(s) : claimCall(s), n, args.reads)
    await s.close()
  }
  r.disconnect()
  await server.stop()
} else {
  throw new TypeError(`unknown --case=${c}`)
}
emit(out)
process.exit(0)
