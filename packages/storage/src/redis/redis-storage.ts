/**
 * RedisStorage: a Redis (or Redis Cluster) backend through ioredis 5. Keys are laid out so that a
 * session's fence and its keys share a cluster slot (see keys.ts). acquire is INCR; writeFenced is
 * a Lua script that checks the fence and applies the ops, sent with EVALSHA (loaded on NOSCRIPT),
 * all calls of one writeFenced in one pipeline.
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
import { dataKey, fenceKey } from './keys.ts'
import { WRITE_FENCED_LUA, WRITE_FENCED_SHA } from './scripts.ts'

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
}

type Client = Redis | Cluster
/** One call of the write script: its keys, then its arguments. */
type ScriptCall = { numkeys: number; args: (string | Buffer)[] }

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
        redisOptions: { ...redisOptions, ...(u.password ? { password: decodeURIComponent(u.password) } : {}), ...(u.username ? { username: decodeURIComponent(u.username) } : {}) },
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
      return await this.#c().incr(this.#fence(fence))
    } catch (err) {
      throw redisError(err, this.#where, 'INCR', true)
    }
  }

  protected override async _claim(fence: string, keys: readonly string[]): Promise<ClaimResult> {
    if (this.cluster || keys.length === 0) return super._claim(fence, keys)
    try {
      // INCR and MGET in one round trip; Redis runs them in order, after every earlier command.
      const res = await this.#c()
        .pipeline()
        .incr(this.#fence(fence))
        .mgetBuffer(keys.map((k) => this.#key(k)))
        .exec()
      const [[e1, generation], [e2, values]] = res as [[Error | null, number], [Error | null, (Buffer | null)[]]]
      if (e1) throw e1
      if (e2) throw e2
      return { generation, values: values.map(nullable) }
    } catch (err) {
      throw redisError(err, this.#where, 'claim')
    }
  }

  protected async _writeFenced(writes: readonly FencedWrite[]): Promise<FencedResult> {
    const c = this.#c()
    const group = this.cluster ? 1 : this.#writesPerScript
    const calls: { first: number; call: ScriptCall }[] = []
    for (let first = 0; first < writes.length; first += group) {
      const end = Math.min(first + group, writes.length)
      const keys: string[] = []
      const argv: (string | Buffer)[] = [String(end - first)]
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
      const results = await this.#evalAll(c, calls.map((x) => x.call))
      const refused: number[] = []
      for (let i = 0; i < calls.length; i++) for (const r of results[i]!) refused.push(calls[i]!.first + r)
      return { refused }
    } catch (err) {
      throw redisError(err, this.#where, 'writeFenced', calls.length === 1)
    }
  }

  /** Runs the write script once per argument list: EVALSHA in one pipeline, SCRIPT LOAD and again for those that got NOSCRIPT. */
  async #evalAll(c: Client, calls: ScriptCall[]): Promise<number[][]> {
    const out: number[][] = new Array(calls.length)
    let todo = calls.map((_, i) => i)
    for (let attempt = 0; todo.length > 0; attempt++) {
      let res: [Error | null, unknown][]
      if (this.cluster) {
        res = await Promise.all(todo.map((i) => c.evalsha(WRITE_FENCED_SHA, calls[i]!.numkeys, calls[i]!.args).then((v): [null, unknown] => [null, v], (e: Error): [Error, unknown] => [e, undefined])))
      } else {
        const p: ChainableCommander = c.pipeline()
        // An array argument is flattened by ioredis (no spread: a write may have many ops).
        for (const i of todo) p.evalsha(WRITE_FENCED_SHA, calls[i]!.numkeys, calls[i]!.args)
        res = (await p.exec()) as [Error | null, unknown][]
      }
      const again: number[] = []
      let noscript = false
      for (let j = 0; j < todo.length; j++) {
        const [err, v] = res[j]!
        if (err) {
          if (attempt === 0 && /NOSCRIPT/.test(err.message)) {
            noscript = true
            again.push(todo[j]!)
            continue
          }
          throw err
        }
        out[todo[j]!] = v as number[]
      }
      if (noscript) await this.#loadScript(c)
      todo = again
    }
    return out
  }

  async #loadScript(c: Client): Promise<void> {
    if (this.cluster) {
      const nodes = (c as Cluster).nodes('master')
      await Promise.all(nodes.map((n) => n.script('LOAD', WRITE_FENCED_LUA)))
    } else {
      await (c as Redis).script('LOAD', WRITE_FENCED_LUA)
    }
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

/** Error replies Redis gives before it runs a command: the command changed nothing. */
const REFUSED_BEFORE_RUN = /^(LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY|NOREPLICAS|OOM|NOSCRIPT)\b/

/** Reply errors that mean "not now" rather than "never". */
const TRANSIENT_REPLY = /^(LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY|NOREPLICAS)\b/

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
    return new StorageError(StorageErrorCode.FAILED, `the Redis storage ${where} refused ${what} (a Redis error reply; see the cause)`, { cause: err, notApplied: refusedBeforeRun })
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
