/**
 * RedisStorage: a Redis (or Redis Cluster) backend through ioredis 5. Keys are laid out so that a
 * session's fence and its keys share a cluster slot (see keys.ts). acquire and writeFenced are Lua
 * scripts (scripts.ts) sent with EVAL, never EVALSHA: no NOSCRIPT retry can reorder the writes of
 * a fence. All script calls of one writeFenced go in one pipeline.
 *
 * Order: every call is one command (or one pipeline) on one connection, and nothing is ever sent
 * twice: no offline queue, no per-request retry, and `autoResendUnfulfilledCommands: false` (a
 * command in flight when the connection drops fails; it is not re-sent after the reconnect, where
 * it could land after a later write of the same fence).
 *
 * Data loss: a fence starts at Redis' clock in microseconds, and a marker key per prefix records
 * when the first generation was handed out. A storage that finds the marker gone or changed knows
 * Redis lost its data; it says so once (`onDataLoss`, and a process warning with the code
 * PEONY_STORAGE_DATA_LOST), keeps the sole copy of a session nobody claimed since, and keeps a
 * stale owner's refused write under `${prefix}lost:…`. See docs/sessions.md, "Redis persistence".
 *
 * Failing fast: the clients this driver creates have no offline queue and no per-request retries,
 * and every command times out after `opTimeoutMs`, so a call made while Redis is unreachable
 * rejects with PEONY_STORAGE_UNAVAILABLE (retryable) at once or within `opTimeoutMs`. The client
 * keeps reconnecting in the background (back-off up to 1 s), so the storage recovers by itself
 * when Redis is back.
 *
 * ioredis is imported when the storage opens, so importing this module loads nothing.
 */
import type { Cluster, ChainableCommander, Redis, RedisOptions } from 'ioredis'
import { StorageError, StorageErrorCode } from '../errors.ts'
import { AbstractStorage, type AbstractStorageOptions, type BatchOp, type ClaimResult, type FencedResult, type FencedWrite } from '../storage.ts'
import { dataKey, fenceKey, lostPrefix, markerKey } from './keys.ts'
import { ACQUIRE_LUA, WRITE_FENCED_LUA } from './scripts.ts'

/** What RedisStorage reports when it finds that Redis lost its data. */
export interface DataLossInfo {
  /** Always 'PEONY_STORAGE_DATA_LOST'. */
  code: 'PEONY_STORAGE_DATA_LOST'
  /** A plain-words explanation for the operator. */
  message: string
  /** The marker this storage saw first (the time, in µs, generations of its prefix were first handed out), and the one it found. */
  marker: { before: string; after: string | undefined }
}

/** Options of {@link RedisStorage}. */
export interface RedisStorageOptions extends AbstractStorageOptions {
  /** Where Redis is. Default `process.env.PEONY_REDIS_URL ?? 'redis://127.0.0.1:6379'`. Ignored when `client` is given. */
  url?: string | undefined
  /**
   * An ioredis client to use instead of one the storage creates. The storage connects it if it
   * is not connected yet, never closes it, and its fail-fast behaviour is the client's own
   * (`enableOfflineQueue`, `maxRetriesPerRequest`, `commandTimeout`).
   */
  client?: Redis | Cluster | undefined
  /** Connect to a Redis Cluster (seeded from `url`). Implied when `client` is a Cluster. Default false. */
  cluster?: boolean | undefined
  /** A command (and connecting) fails with PEONY_STORAGE_UNAVAILABLE after this long. Default 2000 ms. */
  opTimeoutMs?: number | undefined
  /**
   * Fenced writes per Lua script call (not in cluster mode, where each write is one call because
   * its keys must share a slot). Default 256.
   */
  writesPerScript?: number | undefined
  /**
   * Called once per storage (the first time it finds that Redis lost its data: restarted without
   * persistence, flushed, or failed over to a replica that had not received the writes). The
   * storage also emits a process warning with the code PEONY_STORAGE_DATA_LOST, unless this
   * returns `false`. Not called in cluster mode (no marker there: see docs/sessions.md).
   */
  onDataLoss?: ((info: DataLossInfo) => unknown) | undefined
}

type Client = Redis | Cluster
/** One call of the write script: its keys, then its arguments. */
type ScriptCall = { numkeys: number; args: (string | Buffer)[] }
/** The write script's reply: refused indexes, loss seen (1/0). */
type WriteReply = [number[], number]

/** The default fenced writes per script call (see docs/benchmarks.md, "Storage"). */
const WRITES_PER_SCRIPT = 256

const loadIoredis = () => import('ioredis')
let ioredis: ReturnType<typeof loadIoredis> | undefined

/**
 * A storage in Redis. supports: persistent (survives a Peony restart; Redis' own persistence is
 * Redis' business), shared, atomic batches (MULTI) except in cluster mode.
 */
export class RedisStorage extends AbstractStorage {
  /** The URL connected to ('' when a client was given). */
  readonly url: string
  /** Cluster mode: batches are not atomic and every fenced write is one script call. */
  readonly cluster: boolean
  readonly #opTimeoutMs: number
  readonly #writesPerScript: number
  readonly #given: Client | undefined
  #client: Client | undefined
  #lastError: Error | undefined
  readonly #plen: number
  /** Where the storage is, for messages: `at <redacted URL>`, or `of the given client`. */
  readonly #where: string
  readonly #onDataLoss: ((info: DataLossInfo) => unknown) | undefined
  /** The marker key of this prefix (undefined in cluster mode: it lives in a slot of its own). */
  readonly #marker: string | undefined
  /** The marker this storage saw first ('' before its first claim). */
  #seen = ''
  #lossReported = false

  constructor(options: RedisStorageOptions = {}) {
    const cluster = options.cluster ?? (options.client as { isCluster?: boolean } | undefined)?.isCluster === true
    super({ persistent: true, shared: true, atomicBatch: !cluster, fencing: true }, options)
    const timeout = options.opTimeoutMs ?? 2000
    if (!Number.isFinite(timeout) || timeout <= 0) throw new RangeError('opTimeoutMs must be a positive number')
    const group = options.writesPerScript ?? WRITES_PER_SCRIPT
    if (!Number.isSafeInteger(group) || group < 1) throw new RangeError('writesPerScript must be a positive integer')
    this.cluster = cluster
    this.#opTimeoutMs = timeout
    this.#writesPerScript = group
    this.#given = options.client
    this.url = options.client === undefined ? (options.url ?? process.env.PEONY_REDIS_URL ?? 'redis://127.0.0.1:6379') : ''
    this.#plen = this.prefix.length
    this.#where = options.client === undefined ? `at ${redact(this.url)}` : 'of the given client'
    if (options.onDataLoss !== undefined && typeof options.onDataLoss !== 'function') throw new TypeError('onDataLoss must be a function')
    this.#onDataLoss = options.onDataLoss
    this.#marker = cluster ? undefined : markerKey(this.prefix)
  }

  /** True once this storage found that Redis lost its data (see `onDataLoss`). */
  get dataLossSeen(): boolean {
    return this.#lossReported
  }

  /** The ioredis client while open (for diagnostics and tests). */
  get client(): Client | undefined {
    return this.#client
  }

  protected async _open(): Promise<void> {
    if (this.#given !== undefined) {
      const c = this.#given
      try {
        if (c.status === 'wait') await c.connect()
        await c.ping()
      } catch (err) {
        throw new StorageError(StorageErrorCode.UNAVAILABLE, `the Redis storage ${this.#where} is not reachable`, { cause: err })
      }
      this.#client = c
      return
    }
    const mod = await (ioredis ??= loadIoredis())
    const timeout = this.#opTimeoutMs
    const redisOptions: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // A command in flight when the connection drops fails instead of being sent again after the
      // reconnect, after commands issued later (see the module comment).
      autoResendUnfulfilledCommands: false,
      commandTimeout: timeout,
      connectTimeout: timeout,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1000),
    }
    let client: Client
    if (this.cluster) {
      const u = new URL(this.url)
      client = new mod.Cluster([{ host: u.hostname, port: Number(u.port || 6379) }], {
        lazyConnect: true,
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        clusterRetryStrategy: redisOptions.retryStrategy!,
        redisOptions: {
          ...redisOptions,
          ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
          ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
        },
      })
    } else {
      client = new mod.Redis(this.url, redisOptions)
    }
    client.on('error', (err: Error) => {
      this.#lastError = err
    })
    try {
      await withTimeout(client.connect(), timeout, 'connecting to Redis')
    } catch (err) {
      client.disconnect()
      throw new StorageError(StorageErrorCode.UNAVAILABLE, `could not connect to the Redis storage ${this.#where}`, { cause: this.#lastError ?? err })
    }
    this.#client = client
  }

  protected async _close(): Promise<void> {
    const c = this.#client
    this.#client = undefined
    if (c === undefined || c === this.#given) return
    try {
      await withTimeout(c.quit(), this.#opTimeoutMs, 'QUIT')
    } catch {
      c.disconnect()
    }
  }

  protected async _get(key: string): Promise<Uint8Array | undefined> {
    try {
      return nullable(await this.#c().getBuffer(this.#key(key)))
    } catch (err) {
      throw redisError(err, this.#where, 'GET')
    }
  }

  protected async _getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    const c = this.#c()
    try {
      if (!this.cluster) return (await c.mgetBuffer(keys.map((k) => this.#key(k)))).map(nullable)
      return (await Promise.all(keys.map((k) => c.getBuffer(this.#key(k))))).map(nullable)
    } catch (err) {
      throw redisError(err, this.#where, 'MGET')
    }
  }

  protected async _put(key: string, value: Uint8Array): Promise<void> {
    try {
      await this.#c().set(this.#key(key), buf(value))
    } catch (err) {
      throw redisError(err, this.#where, 'SET', true)
    }
  }

  protected async _del(key: string): Promise<void> {
    try {
      await this.#c().del(this.#key(key))
    } catch (err) {
      throw redisError(err, this.#where, 'DEL', true)
    }
  }

  protected async _batch(ops: readonly BatchOp[]): Promise<void> {
    const c = this.#c()
    try {
      if (this.cluster) {
        // No transaction across slots: each op on its own (auto-pipelined per node).
        await Promise.all(ops.map((op) => (op.type === 'put' ? c.set(this.#key(op.key), buf(op.value)) : c.del(this.#key(op.key)))))
        return
      }
      const m = c.multi()
      for (const op of ops) {
        if (op.type === 'put') m.set(this.#key(op.key), buf(op.value))
        else m.del(this.#key(op.key))
      }
      const res = await m.exec()
      if (res === null) throw new Error('MULTI was aborted')
      for (const [err] of res) if (err) throw err
    } catch (err) {
      throw redisError(err, this.#where, 'batch')
    }
  }

  protected async _acquire(fence: string): Promise<number> {
    try {
      const c = this.#c()
      const res = (
        this.#marker === undefined ? await c.eval(ACQUIRE_LUA, 1, this.#fence(fence)) : await c.eval(ACQUIRE_LUA, 2, this.#fence(fence), this.#marker)
      ) as [number, string | null]
      return this.#acquired(res)
    } catch (err) {
      throw redisError(err, this.#where, 'acquire', true)
    }
  }

  protected override async _claim(fence: string, keys: readonly string[]): Promise<ClaimResult> {
    if (this.cluster || keys.length === 0) return super._claim(fence, keys)
    try {
      // The acquire script and MGET in one round trip; Redis runs them in order, after every earlier command.
      const res = await this.#c()
        .pipeline()
        .eval(ACQUIRE_LUA, 2, this.#fence(fence), this.#marker!)
        .mgetBuffer(keys.map((k) => this.#key(k)))
        .exec()
      const [[e1, acquired], [e2, values]] = res as [[Error | null, [number, string | null]], [Error | null, (Buffer | null)[]]]
      if (e1) throw e1
      if (e2) throw e2
      return { generation: this.#acquired(acquired), values: values.map(nullable) }
    } catch (err) {
      throw redisError(err, this.#where, 'claim')
    }
  }

  /** The generation of an acquire script's reply; notes the marker it saw. */
  #acquired([generation, marker]: [number, string | null]): number {
    if (this.#marker !== undefined) {
      if (this.#seen === '') {
        if (marker !== null) this.#seen = marker
      } else if (marker !== this.#seen) this.#lost(marker ?? undefined)
    }
    return generation
  }

  /** Tells the operator, once, that Redis lost this prefix's data. */
  #lost(after: string | undefined): void {
    if (this.#lossReported) return
    this.#lossReported = true
    const message =
      `the Redis storage ${this.#where} lost its data (prefix ${JSON.stringify(this.prefix)}): its fence generations are gone, so Redis was restarted without persistence, flushed, ` +
      'or failed over to a replica that had not received the latest writes. Sessions loaded before the loss that nobody loaded since keep writing; ' +
      `a write of an owner from before the loss that meets a newer owner is refused and kept under ${JSON.stringify(lostPrefix(this.prefix) + '…')}. ` +
      'Player state written since the last persisted point may be lost: check the Redis persistence settings (docs/sessions.md, "Redis persistence").'
    const info: DataLossInfo = { code: 'PEONY_STORAGE_DATA_LOST', message, marker: { before: this.#seen, after } }
    let warn = true
    if (this.#onDataLoss !== undefined) {
      try {
        warn = this.#onDataLoss(info) !== false
      } catch {
        // A failing callback must not fail the storage call that noticed the loss.
      }
    }
    if (warn) process.emitWarning(message, { code: 'PEONY_STORAGE_DATA_LOST' })
  }

  protected async _writeFenced(writes: readonly FencedWrite[]): Promise<FencedResult> {
    const c = this.#c()
    const group = this.cluster ? 1 : this.#writesPerScript
    const calls: { first: number; call: ScriptCall }[] = []
    const marker = this.#marker
    const head = marker === undefined ? ['', '', '0'] : [this.#seen, lostPrefix(this.prefix), String(Buffer.byteLength(this.prefix))]
    for (let first = 0; first < writes.length; first += group) {
      const end = Math.min(first + group, writes.length)
      const keys: string[] = marker === undefined ? [] : [marker]
      const argv: (string | Buffer)[] = [String(end - first), ...head]
      for (let i = first; i < end; i++) {
        const w = writes[i]!
        keys.push(this.#fence(w.fence))
        argv.push(String(w.generation), String(w.ops.length))
        for (const op of w.ops) {
          keys.push(this.#key(op.key))
          if (op.type === 'put') argv.push('p', buf(op.value))
          else argv.push('d')
        }
      }
      calls.push({ first, call: { numkeys: keys.length, args: [...keys, ...argv] } })
    }
    try {
      const results = await this.#evalAll(
        c,
        calls.map((x) => x.call),
      )
      const refused: number[] = []
      let lost = false
      for (let i = 0; i < calls.length; i++) {
        const [ref, seenLoss] = results[i]!
        for (const r of ref) refused.push(calls[i]!.first + r)
        if (seenLoss === 1) lost = true
      }
      if (lost) this.#lost(undefined)
      return { refused }
    } catch (err) {
      throw redisError(err, this.#where, 'writeFenced', calls.length === 1)
    }
  }

  /** Runs the write script once per argument list, with EVAL, in one pipeline (cluster: one call each, auto-pipelined per node). */
  async #evalAll(c: Client, calls: ScriptCall[]): Promise<WriteReply[]> {
    let res: [Error | null, unknown][]
    if (this.cluster) {
      res = await Promise.all(
        calls.map((x) =>
          c.eval(WRITE_FENCED_LUA, x.numkeys, x.args).then(
            (v): [null, unknown] => [null, v],
            (e: Error): [Error, unknown] => [e, undefined],
          ),
        ),
      )
    } else {
      const p: ChainableCommander = c.pipeline()
      // An array argument is flattened by ioredis (no spread: a write may have many ops).
      for (const x of calls) p.eval(WRITE_FENCED_LUA, x.numkeys, x.args)
      res = (await p.exec()) as [Error | null, unknown][]
    }
    return res.map(([err, v]) => {
      if (err) throw err
      return v as WriteReply
    })
  }

  #c(): Client {
    const c = this.#client
    if (c === undefined) throw new StorageError(StorageErrorCode.NOT_OPEN, 'Redis storage is not open')
    return c
  }

  /** The Redis key of a (prefixed) storage key: the hash tag comes from the key without the prefix. */
  #key(k: string): string {
    return dataKey(this.prefix, k.slice(this.#plen))
  }

  #fence(f: string): string {
    return fenceKey(this.prefix, f.slice(this.#plen))
  }
}

function buf(v: Uint8Array): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)
}

function nullable(v: Buffer | null | undefined): Uint8Array | undefined {
  return v === null || v === undefined ? undefined : v
}

/** Reply errors that mean "not now" rather than "never". */
const TRANSIENT = 'LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY|NOREPLICAS'
const TRANSIENT_REPLY = new RegExp(`^(${TRANSIENT})\\b`)

/** Error replies Redis gives before it runs a command: the command changed nothing (the transient ones, and out of memory). */
const REFUSED_BEFORE_RUN = new RegExp(`^(${TRANSIENT}|OOM)\\b`)

/**
 * An ioredis error as a StorageError, in Peony's words with the ioredis error as `cause`: reply
 * errors are FAILED (unless transient); everything else ioredis raises (connection closed, stream
 * not writeable, command timed out, retries exhausted, socket errors) is UNAVAILABLE.
 * `notApplied` is claimed only when it is proven: "stream isn't writeable" means nothing was sent
 * (no offline queue); an error reply that Redis gives before running a command (not ready, busy,
 * out of memory, no script, cluster down, read-only) proves it for that command alone, so only
 * when the call was `single` (one command: several, in a pipeline or a MULTI, may have run in
 * part before one of them failed). A timeout or a connection lost after sending may still be
 * applied: ioredis keeps the command queued, and Redis runs it when it resumes.
 */
function redisError(err: unknown, where: string, what: string, single = false): Error {
  if (err instanceof StorageError) return err
  const e = err as Error
  const reply = e?.name === 'ReplyError'
  const refusedBeforeRun = reply && single && REFUSED_BEFORE_RUN.test(e.message)
  if (reply && !TRANSIENT_REPLY.test(e.message)) {
    return new StorageError(StorageErrorCode.FAILED, `the Redis storage ${where} refused ${what} (a Redis error reply; see the cause)`, {
      cause: err,
      notApplied: refusedBeforeRun,
    })
  }
  // Only "stream isn't writeable" proves the command never left: "Connection is closed" also
  // rejects commands that were already sent.
  const notSent = /isn't writeable/i.test(e?.message ?? '')
  const msg = reply
    ? `the Redis storage ${where} is busy or not ready (${what} refused); the call may be tried again`
    : /timed? ?out/i.test(e?.message ?? '')
      ? `the Redis storage ${where} did not answer ${what} in time; the call may be tried again`
      : `the Redis storage ${where} is not reachable (${what} failed); the driver keeps reconnecting`
  return new StorageError(StorageErrorCode.UNAVAILABLE, msg, { cause: err, notApplied: refusedBeforeRun || notSent })
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
  })
  return Promise.race([p, t]).finally(() => clearTimeout(timer))
}

function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@')
}
