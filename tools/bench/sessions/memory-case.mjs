/**
 * One run of the session memory benchmark, in a fresh process (started by memory.mjs):
 *
 *   node --expose-gc --conditions=@peony/source --import tsx memory-case.mjs --variant=map|peony --state=bytes|rpg [--n=100000]
 *
 * Measures `heapUsed + arrayBuffers` after two full GCs before and after N entries are created,
 * per entry. Prints one line `{"bench":"result", value, ...}`.
 *
 * - map: a `Map<uid, state>` of N states (the baseline: the same states, nothing else).
 * - peony: a real WorkerRuntime (@peony/worker) whose app has sessions, with a storage that holds
 *   nothing (NullStorage: every claim finds no value, every write is accepted), driven by
 *   `runtime.dispatch(id, {cmd: 10, uid, body})` for N uids (1,000 in flight at a time) until N
 *   sessions are resident. Measured dirty (every session has an unflushed change), then clean
 *   (after `runtime.worker.sessions.flush()`). The runtime's clock is a ManualClock that never
 *   moves, so no write-behind tick or eviction runs between the two measurements; every session
 *   setting is the default.
 *
 * States (`--state`):
 * - bytes: `new Uint8Array(1000)`; Peony's app is `app.session({ initial: () => new Uint8Array(1000) })`
 *   with one route that loads the session (dirty: 'auto', the default, marks it dirty).
 * - rpg: the example app's state, a Cultivator (apps/peony-server/examples/idle-rpg/game.ts
 *   `newCultivator`); Peony runs the example app itself (examples/idle-rpg/app.ts) and sends each
 *   uid `player.enter`, which creates the cultivator `Cultivator <uid>` and assigns it to the
 *   session (its definition has dirty: 'manual'; assigning marks it dirty). The map holds
 *   `newCultivator(\`Cultivator ${uid}\`, now)`, the same object built the same way.
 *
 * Both variants first create 100 entries (`--warm`) that are not counted, so the code paths are
 * compiled before the first measurement (Peony also flushes them once).
 */
import { parseArgs } from '../lib/run.mjs'

const args = parseArgs({ variant: '', state: 'bytes', n: 100_000, warm: 100, window: 1000 })
const emit = (o) => process.stdout.write(`${JSON.stringify({ bench: 'result', ...o })}\n`)
if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc')

/** heapUsed + arrayBuffers after two full GCs. */
function mem() {
  globalThis.gc()
  globalThis.gc()
  const m = process.memoryUsage()
  return { total: m.heapUsed + m.arrayBuffers, heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers }
}
/** Lets pending callbacks and promise jobs run. */
const turn = () => new Promise((r) => setImmediate(r))
const perEntry = (a, b) => (b.total - a.total) / args.n

const { n, warm } = args
const first = 100_001
const warmUids = Array.from({ length: warm }, (_, i) => first + i)
const uids = Array.from({ length: n }, (_, i) => first + warm + i)
const now = Date.now()
const RPG = '../../../apps/peony-server/examples/idle-rpg/'

let out
if (args.variant === 'map') {
  let make
  if (args.state === 'bytes') make = () => new Uint8Array(1000)
  else {
    const { newCultivator } = await import(RPG + 'game.ts')
    // The same expression as the example's player.enter (its default name).
    make = (uid) => newCultivator(`Cultivator ${String(uid)}`, now)
  }
  const m = new Map()
  for (const u of warmUids) m.set(u, make(u))
  await turn()
  const base = mem()
  for (const u of uids) m.set(u, make(u))
  await turn()
  const after = mem()
  globalThis.keep = m
  out = { value: perEntry(base, after), base, after, entries: m.size - warm }
} else if (args.variant === 'peony') {
  const { createApp, WorkerRuntime, ManualClock, silentLogger } = await import('@peony/worker')
  const { AbstractStorage } = await import('@peony/storage')
  const { packValue } = await import('@peony/protocol')
  const { makeDriver } = await import('./common.mjs')

  /** A storage that answers nothing: claims find no value, fenced writes are all accepted, nothing is kept. */
  class NullStorage extends AbstractStorage {
    constructor() {
      super({ persistent: false, shared: false, atomicBatch: true, fencing: true })
    }
    async _open() {}
    async _close() {}
    async _get() {
      return undefined
    }
    async _getMany(keys) {
      return keys.map(() => undefined)
    }
    async _put() {}
    async _del() {}
    async _batch() {}
    async _acquire() {
      return 1
    }
    async _claim(_fence, keys) {
      return { generation: 1, values: keys.map(() => undefined) }
    }
    async _writeFenced() {
      return { refused: [] }
    }
  }

  let app
  let body
  if (args.state === 'bytes') {
    app = createApp()
    const def = app.session({ initial: () => new Uint8Array(1000) })
    app.route('touch', (req) => {
      def.of(req)
    })
    body = packValue({ cmd: 'touch', sn: 1 })
  } else {
    app = (await import(RPG + 'app.ts')).default
    body = packValue({ cmd: 'player.enter', sn: 1 })
  }
  const driver = makeDriver()
  const runtime = new WorkerRuntime({
    app,
    info: { slot: 0, groupId: 1, index: 0, serverId: 'bench', generation: 0 },
    egress: { send() {} },
    clock: new ManualClock(now),
    logger: silentLogger,
    onTaskDone: driver.track,
    sessions: { storage: new NullStorage() },
  })
  await runtime.start()
  // A connection, so the example app's replies are encoded as in production (then dropped).
  const taskOf = (uid) => ({ cmd: 10, uid, nodeId: 1, connId: uid, body })
  const check = (outcomes, count) => {
    if (outcomes.ok !== count) throw new Error(`expected ${count} ok tasks, got ${JSON.stringify(outcomes)}`)
  }
  check(await driver.run(runtime, warmUids, taskOf, args.window), warm)
  await runtime.worker.sessions.flush()
  await turn()
  const base = mem()
  check(await driver.run(runtime, uids, taskOf, args.window), warm + n)
  await turn()
  const st = runtime.stats()
  if (st.sessions.resident !== warm + n || st.sessions.dirty !== n || st.lanes !== 0)
    throw new Error(`unexpected state before the dirty measurement: ${JSON.stringify(st)}`)
  const dirty = mem()
  const flushed = await runtime.worker.sessions.flush()
  await turn()
  const st2 = runtime.stats()
  if (flushed.written !== n || st2.sessions.dirty !== 0 || st2.sessions.resident !== warm + n)
    throw new Error(`unexpected state after the flush: ${JSON.stringify({ flushed, sessions: st2.sessions })}`)
  const clean = mem()
  globalThis.keep = runtime
  out = {
    value: perEntry(base, clean),
    clean: perEntry(base, clean),
    dirty: perEntry(base, dirty),
    base,
    dirtyMem: dirty,
    cleanMem: clean,
    estimatedBytesPerSession: st2.sessions.bytes / st2.sessions.resident,
    entries: n,
  }
} else {
  throw new TypeError(`unknown --variant=${args.variant}`)
}
emit({ ...out, state: args.state, variant: args.variant })
process.exit(0)
