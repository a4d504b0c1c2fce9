/**
 * One run of one case of the first-request load latency benchmark, in a fresh process (started
 * by load-latency.mjs):
 *
 *   node --conditions=@peony/source --import tsx load-latency-case.mjs --case=<driver>-<mode> [--players=10000] [--warm=1000]
 *
 * Storage first gets `players + warm` existing players: the record Peony writes for a 1,000-byte
 * Uint8Array state (common.mjs recordOf), written raw (classic-level batches into a fresh
 * directory, then closed; or ioredis SETs into a redis-server of this run's own, no persistence).
 * Then, one at a time in a fixed shuffled order (the same in every case), `warm` uids not
 * recorded and `players` uids timed:
 *
 * - <driver>-peony: a storage host thread serving LevelStorage / RedisStorage and a worker thread
 *   with a WorkerRuntime over RemoteStorage (load-thread.mjs): first request of each player,
 *   dispatch → reply.
 * - <driver>-remote-get / <driver>-remote-claim: the same two threads, raw RemoteStorage.get /
 *   .claim round trips from the worker thread.
 * - level-raw-get: classic-level `await db.get(key)` in this thread (no host thread);
 *   redis-raw-get: ioredis `await getBuffer(key)` in this thread.
 *
 * Value: p50 in µs. Prints one line `{"bench":"result", value, p50, p90, p99, p999, max, ...}`.
 */
import { join } from 'node:path'
import { MessageChannel } from 'node:worker_threads'
import { ClassicLevel } from 'classic-level'
import { Redis } from 'ioredis'
import { parseArgs } from '../lib/run.mjs'
import { latencySummary } from '../lib/stats.mjs'
import { HERE, caseDir, emitResult as emit, keyOf, nextMessage, recordOf, shuffle, startHost, startRedis, startThread, stateOf } from './common.mjs'

const args = parseArgs({ case: '', players: 10_000, warm: 1000 })
const dir = caseDir()

const FIRST_UID = 100_001
const PREFIX = 'bench:'
const total = args.players + args.warm
const m = /^(level|redis)-(peony|remote-get|remote-claim|raw-get)$/.exec(args.case)
if (!m) throw new TypeError(`unknown --case=${args.case}`)
const [, driver, mode] = m

/** Every uid in a shuffled order that is the same in every run and case (seeded xorshift32). */
function order() {
  const uids = shuffle(
    Int32Array.from({ length: total }, (_, i) => FIRST_UID + i),
    0x9e3779b9,
  )
  return { warm: Array.from(uids.subarray(0, args.warm)), timed: Array.from(uids.subarray(args.warm)) }
}
const { warm, timed } = order()

/** Every player's record (written before anything is timed). */
function* players() {
  for (let i = 0; i < total; i++) {
    const uid = FIRST_UID + i
    const v = recordOf(stateOf(uid))
    yield [keyOf(uid), Buffer.from(v.buffer, v.byteOffset, v.byteLength)]
  }
}

/** Runs load-thread.mjs against a host thread serving `config`; resolves with its result. */
async function threads(config) {
  const { port1, port2 } = new MessageChannel()
  const host = await startHost(config, port1)
  const w = startThread(join(HERE, 'load-thread.mjs'), { port: port2, mode, warm, timed }, [port2], 'peony-worker')
  const res = await nextMessage(w, (x) => x.t === 'result', 600_000, 'the load-thread result')
  await w.terminate()
  await host.close()
  return res
}

/** Times `call(key)` for the warm (not recorded) then the timed uids, one at a time, in this thread. */
async function inThread(call) {
  let missing = 0
  for (const uid of warm) if ((await call(keyOf(uid))) === undefined) missing++
  const sample = new Float64Array(timed.length)
  for (let i = 0; i < timed.length; i++) {
    const k = keyOf(timed[i])
    const t0 = performance.now()
    const v = await call(k)
    sample[i] = (performance.now() - t0) * 1000
    if (v === undefined) missing++
  }
  return { sample, errors: missing > 0 ? [`${missing} keys missing`] : [] }
}

let res
if (driver === 'level') {
  const location = join(dir, 'db')
  const db = new ClassicLevel(location, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open()
  let ops = []
  for (const [key, value] of players()) {
    ops.push({ type: 'put', key, value })
    if (ops.length === 1000) {
      await db.batch(ops)
      ops = []
    }
  }
  if (ops.length > 0) await db.batch(ops)
  await db.close()
  if (mode === 'raw-get') {
    const db2 = new ClassicLevel(location, { keyEncoding: 'utf8', valueEncoding: 'view' })
    await db2.open()
    res = await inThread((k) => db2.get(k))
    await db2.close()
  } else {
    res = await threads({ driver: 'leveldb', location })
  }
} else {
  const server = await startRedis()
  try {
    const r = new Redis(server.url)
    let cmds = []
    for (const [key, value] of players()) {
      cmds.push(['set', `${PREFIX}{${key}}`, value])
      if (cmds.length === 1000) {
        await r.pipeline(cmds).exec()
        cmds = []
      }
    }
    if (cmds.length > 0) await r.pipeline(cmds).exec()
    if (mode === 'raw-get') res = await inThread(async (k) => (await r.getBuffer(`${PREFIX}{${k}}`)) ?? undefined)
    r.disconnect()
    if (mode !== 'raw-get') res = await threads({ driver: 'redis', url: server.url, prefix: PREFIX })
  } finally {
    await server.stop()
  }
}
const s = latencySummary(res.sample)
emit({
  value: s.p50,
  ...s,
  loadLatency: res.loadLatency,
  ok: res.errors.length === 0,
  errors: res.errors,
  case: args.case,
  players: args.players,
  warm: args.warm,
})
process.exit(0)
