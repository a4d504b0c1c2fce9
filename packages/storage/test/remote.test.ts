import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads'
import { MemoryStorage, MemoryStore, type AbstractStorage } from '@peony/storage'
import { RemoteStorage, serveStorage, type StorageServer } from '@peony/storage/remote'
import { storageSuite } from '@peony/storage/testing'
import { tempDir } from '@peony/test-utils'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'

const BOOT = new URL('./fixtures/boot.mjs', import.meta.url)
const entry = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).href

/** A storage host worker thread (fixtures/storage-host.ts) and a tiny RPC to it. */
class HostThread {
  readonly worker: Worker
  #id = 0
  #waiting = new Map<number, (m: { ok?: boolean; error?: string }) => void>()
  readonly ready: Promise<void>
  constructor() {
    this.worker = new Worker(BOOT, { workerData: { entry: entry('storage-host.ts') }, execArgv: ['--conditions=@peony/source'] })
    this.ready = new Promise((resolve, reject) => {
      this.worker.once('error', reject)
      this.worker.on('message', (m: { ready?: boolean; id?: number; ok?: boolean; error?: string }) => {
        if (m.ready) resolve()
        else this.#waiting.get(m.id!)?.(m)
      })
    })
  }
  async #rpc(msg: object, transfer: MessagePort[] = []): Promise<void> {
    await this.ready
    const id = ++this.#id
    const res = await new Promise<{ ok?: boolean; error?: string }>((resolve) => {
      this.#waiting.set(id, resolve)
      this.worker.postMessage({ ...msg, id }, transfer)
    })
    this.#waiting.delete(id)
    if (res.error) throw Object.assign(new Error(`host: ${res.error}`), { code: res.error })
  }
  /** A port served by the host over the LevelDB at `location` (opened on first use). */
  async serve(location: string): Promise<MessagePort> {
    const { port1, port2 } = new MessageChannel()
    await this.#rpc({ type: 'serve', location, port: port2 }, [port2])
    return port1
  }
  close(location: string): Promise<void> {
    return this.#rpc({ type: 'close', location })
  }
}

// ── The suite over an in-thread MessageChannel, hosting a MemoryStorage ──

const memHosts = new Map<AbstractStorage, { store: MemoryStore; host: MemoryStorage; server: StorageServer; port: MessagePort }>()
async function remoteOverMemory(store: MemoryStore, prefix: string | undefined): Promise<RemoteStorage> {
  const host = new MemoryStorage({ store })
  await host.open()
  const { port1, port2 } = new MessageChannel()
  const server = serveStorage(host, port2)
  const client = new RemoteStorage(port1, { prefix })
  memHosts.set(client, { store, host, server, port: port1 })
  return client
}

storageSuite({
  name: 'RemoteStorage → MessageChannel → MemoryStorage',
  factory: ({ prefix }) => remoteOverMemory(new MemoryStore(), prefix),
  reopen: (previous, { prefix }) => remoteOverMemory(memHosts.get(previous)!.store, prefix),
  cleanup: async (s) => {
    const h = memHosts.get(s)!
    h.server.close()
    h.port.close()
    await h.host.close()
  },
})

// ── The suite over a real storage host thread, hosting a LevelStorage ──

const host = new HostThread()
afterAll(() => host.worker.terminate())
const locations = new Map<AbstractStorage, string>()
async function remoteOverLevel(location: string, prefix: string | undefined): Promise<RemoteStorage> {
  const client = new RemoteStorage(await host.serve(location), { prefix })
  locations.set(client, location)
  return client
}

storageSuite({
  name: 'RemoteStorage → worker thread → LevelStorage',
  factory: ({ prefix }) => remoteOverLevel(join(tempDir('peony-remote-'), 'db'), prefix),
  reopen: async (previous, { prefix }) => {
    const location = locations.get(previous)!
    await host.close(location)
    return remoteOverLevel(location, prefix)
  },
  cleanup: async (s) => {
    const location = locations.get(s)!
    await host.close(location)
    rmSync(location, { recursive: true, force: true })
  },
})

describe('RemoteStorage → LevelStorage: fence handles', () => {
  it("a claim's handle crosses the port, and writes carry it back (the host checks it names the fence)", async () => {
    const location = join(tempDir('peony-remote-'), 'db')
    const client = await remoteOverLevel(location, undefined)
    await client.open()
    try {
      const a = await client.claim('a', ['a'])
      const b = await client.claim('b', ['b'])
      expect(Number.isSafeInteger(a.handle) && Number.isSafeInteger(b.handle) && a.handle !== b.handle).toBe(true)
      const put = (key: string, v: string) => ({ type: 'put' as const, key, value: Buffer.from(v) })
      const res = await client.writeFenced([
        { fence: 'a', generation: a.generation, ops: [put('a', '1')], handle: a.handle },
        { fence: 'b', generation: b.generation, ops: [put('b', '1')], handle: a.handle },
        { fence: 'a', generation: a.generation + 1, ops: [put('a', 'x')], handle: a.handle },
      ])
      expect(res.refused).toEqual([2])
      expect((await client.getMany(['a', 'b'])).map((v) => Buffer.from(v!).toString())).toEqual(['1', '1'])
    } finally {
      await client.close()
      await host.close(location)
      rmSync(location, { recursive: true, force: true })
    }
  })
})

// ── Remote specifics ──

describe('RemoteStorage and serveStorage', () => {
  const cleanups: (() => unknown)[] = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })
  function memoryPair(opTimeoutMs?: number) {
    const host = new MemoryStorage()
    const { port1, port2 } = new MessageChannel()
    const server = serveStorage(host, port2)
    const client = new RemoteStorage(port1, opTimeoutMs === undefined ? {} : { opTimeoutMs })
    cleanups.push(async () => {
      await client.close()
      server.close()
      port1.close()
      await host.close()
    })
    return { host, server, client, port1, port2 }
  }

  it("supports are the host storage's once open", async () => {
    const { host, client } = memoryPair()
    await host.open()
    expect(client.supports.persistent).toBe(false)
    await client.open()
    expect(client.supports).toEqual({ persistent: false, shared: false, atomicBatch: true, fencing: true })
    const location = join(tempDir(), 'db')
    const level = new RemoteStorage(await host2().serve(location))
    cleanups.push(() => level.close())
    await level.open()
    expect(level.supports).toEqual({ persistent: true, shared: false, atomicBatch: true, fencing: true })
  })

  it('errors cross the port with their code and retryable flag', async () => {
    const { host, client } = memoryPair()
    await host.open()
    await client.open()
    await host.close()
    const err = await client.get('k').catch((e: unknown) => e)
    // and notApplied: a call on a closed storage changed nothing (the output gate relies on it)
    expect(err).toMatchObject({ name: 'StorageError', code: 'PEONY_STORAGE_NOT_OPEN', retryable: false, notApplied: true })
    // a call whose answer did not come in time may still be applied: notApplied false
    class HangingStorage extends MemoryStorage {
      protected override _get(): Promise<Uint8Array | undefined> {
        return new Promise(() => {})
      }
    }
    const hanging = new HangingStorage()
    await hanging.open()
    const { port1, port2 } = new MessageChannel()
    const server = serveStorage(hanging, port2)
    const slow = new RemoteStorage(port1, { opTimeoutMs: 30 })
    cleanups.push(async () => {
      await slow.close()
      server.close()
      port1.close()
    })
    await slow.open()
    const late = await slow.get('k').catch((e: unknown) => e)
    expect(late).toMatchObject({ code: 'PEONY_STORAGE_UNAVAILABLE', notApplied: false })
  })

  it("a driver error crosses the port in Peony's words, with the driver's error (and its cause) as the cause", async () => {
    // A driver whose reads fail the way a client library's do: its own error, with its own cause.
    class FailingStorage extends MemoryStorage {
      protected override async _get(): Promise<Uint8Array | undefined> {
        throw Object.assign(new Error('socket hang up', { cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) }), { code: 'ERR_DRIVER' })
      }
    }
    const host = new FailingStorage()
    await host.open()
    const { port1, port2 } = new MessageChannel()
    const server = serveStorage(host, port2)
    const client = new RemoteStorage(port1)
    cleanups.push(async () => {
      await client.close()
      server.close()
      port1.close()
      await host.close()
    })
    await client.open()
    const err = (await client.get('k').catch((e: unknown) => e)) as Error
    expect(err).toMatchObject({
      name: 'StorageError',
      code: 'PEONY_STORAGE_FAILED',
      retryable: false,
      message: "the storage driver failed get (the driver's error is the cause)",
    })
    expect(err.cause).toMatchObject({ message: 'socket hang up', code: 'ERR_DRIVER', cause: { message: 'read ECONNRESET', code: 'ECONNRESET' } })
    // the cause's own stack (where the driver threw), not the client's message handler
    expect((err.cause as Error).stack).toContain('_get')
  })

  it('the host stops serving: pending and later calls reject with PEONY_STORAGE_CLOSED (retryable)', async () => {
    const { host, server, client } = memoryPair()
    await host.open()
    await client.open()
    const pending = Promise.allSettled([client.get('k'), client.put('k', Buffer.from('v')), client.acquire('f')])
    server.close()
    for (const r of await pending) expect(r).toMatchObject({ status: 'rejected', reason: { code: 'PEONY_STORAGE_CLOSED', retryable: true } })
    await expect(client.get('k')).rejects.toMatchObject({ code: 'PEONY_STORAGE_CLOSED' })
    await client.close()
    await expect(client.open()).rejects.toMatchObject({ code: 'PEONY_STORAGE_CLOSED' })
  })

  it('the host thread dies: pending and later calls reject with PEONY_STORAGE_CLOSED', async () => {
    const own = new HostThread()
    cleanups.push(() => own.worker.terminate())
    const client = new RemoteStorage(await own.serve(join(tempDir(), 'db')))
    cleanups.push(() => client.close())
    await client.open()
    const g = await client.acquire('u')
    const value = new Uint8Array(1024)
    const pending = Promise.allSettled(
      Array.from({ length: 50 }, (_, i) => client.writeFenced([{ fence: 'u', generation: g, ops: [{ type: 'put', key: `u/${i}`, value }] }])),
    )
    await own.worker.terminate()
    const settled = await pending
    const rejected = settled.filter((r) => r.status === 'rejected')
    expect(rejected.length).toBeGreaterThan(0)
    for (const r of rejected) expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'PEONY_STORAGE_CLOSED', retryable: true })
    await expect(client.get('u')).rejects.toMatchObject({ code: 'PEONY_STORAGE_CLOSED' })
  })

  it('open() against a port nobody serves rejects with PEONY_STORAGE_UNAVAILABLE after opTimeoutMs', async () => {
    const { port1, port2 } = new MessageChannel()
    cleanups.push(() => {
      port1.close()
      port2.close()
    })
    const client = new RemoteStorage(port1, { opTimeoutMs: 200 })
    const t = Date.now()
    await expect(client.open()).rejects.toMatchObject({ code: 'PEONY_STORAGE_UNAVAILABLE', retryable: true })
    expect(Date.now() - t).toBeGreaterThanOrEqual(180)
    expect(client.status).toBe('closed')
  })

  it('bulk data crosses as one message with transferred buffers, not one clone per value', async () => {
    const { host, client, port1 } = memoryPair()
    await host.open()
    await client.open()
    const fences = Array.from({ length: 1000 }, (_, i) => `s${i}`)
    const gens = await Promise.all(fences.map((f) => client.acquire(f)))
    const spy = vi.spyOn(port1, 'postMessage')
    const value = new Uint8Array(1024).fill(1)
    await client.writeFenced(
      fences.map((fence, i) => ({
        fence,
        generation: gens[i]!,
        ops: [
          { type: 'put', key: `${fence}/a`, value },
          { type: 'del', key: `${fence}/b` },
        ],
      })),
    )
    expect(spy).toHaveBeenCalledTimes(1)
    const [msg, transfer] = spy.mock.calls[0]! as unknown as [Record<string, unknown>, ArrayBuffer[]]
    // gens, handles, counts, the ops' lengths and values.
    expect(transfer).toHaveLength(5)
    // Transferred, not copied: the sender's buffers are detached now.
    for (const t of transfer) expect(t).toBeInstanceOf(ArrayBuffer)
    for (const t of transfer) expect(t.byteLength).toBe(0)
    const countViews = (v: unknown): number =>
      ArrayBuffer.isView(v)
        ? 1
        : Array.isArray(v)
          ? v.reduce((n: number, x) => n + countViews(x), 0)
          : typeof v === 'object' && v !== null
            ? Object.values(v).reduce((n: number, x) => n + countViews(x), 0)
            : 0
    expect(countViews(msg)).toBeLessThanOrEqual(5)
    const got = await client.getMany(fences.map((f) => `${f}/a`))
    expect(got.every((v) => v?.byteLength === 1024 && v[0] === 1)).toBe(true)
  })

  it("values that lie back to back in one buffer cross with one slice; the caller's buffer stays intact", async () => {
    const { host, client } = memoryPair()
    await host.open()
    await client.open()
    const slab = new Uint8Array(3 * 100)
    for (let i = 0; i < slab.length; i++) slab[i] = i % 251
    const fences = ['a', 'b', 'c']
    const gens = await Promise.all(fences.map((f) => client.acquire(f)))
    const view = (k: number) => slab.subarray(k * 100, k * 100 + 100)
    const r = await client.writeFenced(fences.map((fence, k) => ({ fence, generation: gens[k]!, ops: [{ type: 'put', key: fence, value: view(k) }] })))
    expect(r.refused).toEqual([])
    expect(slab.byteLength).toBe(300) // not detached: a copy went
    const got = await client.getMany(fences)
    for (let k = 0; k < 3; k++) expect(Array.from(got[k]!)).toEqual(Array.from(view(k)))
    // Not back to back (a gap, then out of order): the per-value path, same result.
    const r2 = await client.batch([
      { type: 'put', key: 'x', value: slab.subarray(200, 250) },
      { type: 'put', key: 'y', value: slab.subarray(0, 10) },
    ])
    expect(r2).toBeUndefined()
    expect(Array.from((await client.get('x'))!)).toEqual(Array.from(slab.subarray(200, 250)))
    expect(Array.from((await client.get('y'))!)).toEqual(Array.from(slab.subarray(0, 10)))
  })

  it("a write's values buffer comes back with the answer and carries a later write (not after a failed write); a key equal to its fence crosses once", async () => {
    const { host, client, port1 } = memoryPair()
    await host.open()
    await client.open()
    const fences = Array.from({ length: 200 }, (_, i) => `s${i}`)
    const gens = await Promise.all(fences.map((f) => client.acquire(f)))
    const back: ArrayBuffer[] = []
    port1.on('message', (m: { b?: ArrayBuffer }) => {
      if (m.b !== undefined) back.push(m.b)
    })
    const sent = vi.spyOn(port1, 'postMessage')
    const write = (fill: number, size: number) =>
      client.writeFenced(
        fences.map((fence, i) => ({ fence, generation: gens[i]!, ops: [{ type: 'put', key: fence, value: new Uint8Array(size).fill(fill) }] })),
      )
    expect((await write(1, 1000)).refused).toEqual([])
    expect(back).toHaveLength(1)
    expect(back[0]!.byteLength).toBeGreaterThanOrEqual(200 * 1000)
    // Each op's key is its fence: it crosses once, as the fence (the op's key goes as '').
    expect((sent.mock.calls[0]![0] as { ops: { keys: string } }).ops.keys).toBe('\0'.repeat(199))
    // The next write (smaller values) is packed into the buffer that came back: nothing of the first write shows.
    expect((await write(2, 300)).refused).toEqual([])
    const transfer = sent.mock.calls[1]![1] as ArrayBuffer[]
    expect(transfer).toContain(back[0])
    const got = await client.getMany(fences)
    expect(got.every((v) => v?.byteLength === 300 && v.every((x) => x === 2))).toBe(true)
    // A write the host fails does not hand its buffer back.
    const n = back.length
    await host.close()
    await expect(write(3, 1000)).rejects.toMatchObject({ code: 'PEONY_STORAGE_NOT_OPEN' })
    expect(back).toHaveLength(n)
  })

  it('several worker threads, each with its own RemoteStorage, share one host; an idle client does not keep its thread alive', async () => {
    const location = join(tempDir(), 'db')
    const h = host2()
    const names = ['alpha', 'beta', 'gamma']
    const results = await Promise.all(
      names.map(async (name) => {
        const port = await h.serve(location)
        const w = new Worker(BOOT, {
          workerData: { entry: entry('storage-client.ts'), port, name, sessions: 200 },
          transferList: [port],
          execArgv: ['--conditions=@peony/source'],
        })
        const report = new Promise<{ gens: number[]; refused: number[]; supports: unknown }>((resolve, reject) => {
          w.once('message', resolve)
          w.once('error', reject)
        })
        const exited = new Promise<number>((resolve) => w.once('exit', resolve))
        const r = await report
        // The client thread ends by itself although its RemoteStorage is still open.
        expect(await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 5000))])).toBe(0)
        return r
      }),
    )
    for (const r of results) {
      expect(r.refused).toEqual([])
      expect(r.gens.every((g) => g === 1)).toBe(true)
      expect(r.supports).toMatchObject({ persistent: true })
    }
    const check = new RemoteStorage(await h.serve(location))
    cleanups.push(() => check.close())
    await check.open()
    const got = await check.getMany(names.flatMap((n) => [`${n}-0/state`, `${n}-199/state`]))
    expect(got.every((v) => v?.byteLength === 1024)).toBe(true)
    // A claim from another client fences off the first owner.
    expect((await check.claim('alpha-0', [])).generation).toBe(2)
  })
})

let second: HostThread | undefined
/** A second host thread for the specifics (the suite's host keeps serving the suite). */
function host2(): HostThread {
  second ??= new HostThread()
  return second
}
afterAll(() => second?.worker.terminate())
beforeAll(() => host.ready)
