import { spawn, type ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { LevelStorage } from '@peony/storage/leveldb'
import { holdNextRead } from '@peony/storage/leveldb/testing'
import { storageSuite } from '@peony/storage/testing'
import { tempDir } from '@peony/test-utils'
import { afterEach, describe, expect, it } from 'vitest'

storageSuite({
  name: 'LevelStorage',
  factory: ({ prefix }) => new LevelStorage({ location: join(tempDir('peony-level-'), 'db'), prefix }),
  reopen: (previous, { prefix }) => new LevelStorage({ location: (previous as LevelStorage).location, prefix }),
  cleanup: (s) => rmSync((s as LevelStorage).location, { recursive: true, force: true }),
  holdNextRead: (s) => holdNextRead(s as LevelStorage),
})

storageSuite({
  name: 'LevelStorage with fenceCacheSize 2',
  factory: ({ prefix }) => new LevelStorage({ location: join(tempDir('peony-level-'), 'db'), prefix, fenceCacheSize: 2 }),
  reopen: (previous, { prefix }) => new LevelStorage({ location: (previous as LevelStorage).location, prefix, fenceCacheSize: 2 }),
  cleanup: (s) => rmSync((s as LevelStorage).location, { recursive: true, force: true }),
  holdNextRead: (s) => holdNextRead(s as LevelStorage),
})

storageSuite({
  name: 'LevelStorage with readSync',
  factory: ({ prefix }) => new LevelStorage({ location: join(tempDir('peony-level-'), 'db'), prefix, readSync: true }),
  reopen: (previous, { prefix }) => new LevelStorage({ location: (previous as LevelStorage).location, prefix, readSync: true }),
  cleanup: (s) => rmSync((s as LevelStorage).location, { recursive: true, force: true }),
})

const WRITER = fileURLToPath(new URL('./fixtures/level-writer.ts', import.meta.url))
const BOOT = new URL('./fixtures/boot.mjs', import.meta.url)

/** Starts level-writer.ts as a child process; resolves with it and its first `ready` line. */
function startWriter(dir: string, mode: 'hold' | 'loop'): { child: ChildProcess; next: () => Promise<Record<string, unknown>> } {
  const child = spawn(process.execPath, ['--conditions=@peony/source', '--import', 'tsx', WRITER, dir, mode], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout! })
  const queue: Record<string, unknown>[] = []
  const waiters: ((m: Record<string, unknown>) => void)[] = []
  lines.on('line', (l) => {
    const m = JSON.parse(l) as Record<string, unknown>
    const w = waiters.shift()
    if (w) w(m)
    else queue.push(m)
  })
  const next = () =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const m = queue.shift()
      if (m) return resolve(m)
      waiters.push(resolve)
      child.once('exit', (code) => reject(new Error(`writer exited with ${code}`)))
    })
  return { child, next }
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', () => resolve())
    child.kill('SIGKILL')
  })
}

describe('LevelStorage: locks and crashes', () => {
  const open: LevelStorage[] = []
  const children: ChildProcess[] = []
  afterEach(async () => {
    for (const c of children.splice(0)) await killed(c)
    for (const s of open.splice(0)) await s.close()
  })
  const level = (location: string) => {
    const s = new LevelStorage({ location })
    open.push(s)
    return s
  }

  it('a second handle in this process gets PEONY_STORAGE_LOCKED (retryable) and stays closed', async () => {
    const dir = join(tempDir(), 'db')
    await level(dir).open()
    const second = level(dir)
    await expect(second.open()).rejects.toMatchObject({ code: 'PEONY_STORAGE_LOCKED', retryable: true })
    expect(second.status).toBe('closed')
  })

  it('a directory held by another process: PEONY_STORAGE_LOCKED; after that process is SIGKILLed it reopens with its data and generations', async () => {
    const dir = join(tempDir(), 'db')
    const w = startWriter(dir, 'hold')
    children.push(w.child)
    const ready = await w.next()
    expect(ready.gens).toEqual([1, 1, 1, 1, 1, 1, 1, 1])
    await expect(level(dir).open()).rejects.toMatchObject({ code: 'PEONY_STORAGE_LOCKED', retryable: true })
    await killed(w.child)
    const s = level(dir)
    await s.open()
    expect(Buffer.from((await s.get('held'))!).toString()).toBe('by-writer')
    expect(await s.acquire('s0')).toBe(2)
  })

  it('SIGKILL in the middle of a stream of fenced writes: it reopens, every write landed whole or not at all', async () => {
    const dir = join(tempDir(), 'db')
    const w = startWriter(dir, 'loop')
    children.push(w.child)
    const { gens } = (await w.next()) as { gens: number[] }
    await w.next() // 20 rounds written
    await new Promise((r) => setTimeout(r, 20 + Math.random() * 80))
    await killed(w.child)
    const s = level(dir)
    await s.open()
    const keys = gens.flatMap((_, i) => [`s${i}/a`, `s${i}/b`])
    const values = await s.getMany(keys)
    for (let i = 0; i < gens.length; i++) {
      const a = values[2 * i]!
      const bb = values[2 * i + 1]!
      expect(a).toBeDefined()
      expect(Buffer.from(a).equals(Buffer.from(bb)), `s${i}: a and b were written in one fenced write`).toBe(true)
      expect(Buffer.from(a).readUInt32LE(0)).toBeGreaterThanOrEqual(20)
    }
    // The dead writer's generation is still the current one; a new owner fences it off.
    const c = await s.claim('s0', ['s0/a'])
    expect(c.generation).toBe(gens[0]! + 1)
  })

  for (const mode of ['hold', 'loop'] as const) {
    it(`a worker thread that had it open is terminated (${mode === 'loop' ? 'while writing' : 'idle'}): this thread opens it at once`, async () => {
      const dir = join(tempDir(), 'db')
      const worker = new Worker(BOOT, {
        workerData: { entry: new URL('./fixtures/level-writer.ts', import.meta.url).href, dir, mode },
        execArgv: ['--conditions=@peony/source'],
      })
      const msgs: Record<string, unknown>[] = []
      await new Promise<void>((resolve, reject) => {
        worker.on('message', (m: Record<string, unknown>) => {
          msgs.push(m)
          if (mode === 'hold' ? m.ready : m.writing) resolve()
        })
        worker.once('error', reject)
      })
      await expect(level(dir).open()).rejects.toMatchObject({ code: 'PEONY_STORAGE_LOCKED' })
      await worker.terminate()
      const s = level(dir)
      await s.open()
      expect(Buffer.from((await s.get('held'))!).toString()).toBe('by-writer')
      expect(await s.acquire('s0')).toBe(2)
    })
  }

  it('options: location is required; writeBufferSize must be an integer ≥ 64 KiB', () => {
    expect(() => new LevelStorage({} as never)).toThrow(TypeError)
    expect(() => new LevelStorage({ location: 'x', writeBufferSize: 100 })).toThrow(RangeError)
    expect(new LevelStorage({ location: 'x', writeBufferSize: 16 << 20 }).location).toBe('x')
  })
})

describe('LevelStorage: the fence cache is bounded (fenceCacheSize)', () => {
  const made: LevelStorage[] = []
  afterEach(async () => {
    for (const s of made.splice(0)) {
      await s.close()
      rmSync(s.location, { recursive: true, force: true })
    }
  })

  it('many fences through a cache of 50: it never holds more once calls settle, and evicted fences still refuse stale generations', async () => {
    const s = new LevelStorage({ location: join(tempDir('peony-level-'), 'db'), fenceCacheSize: 50 })
    made.push(s)
    await s.open()
    const first = new Map<string, number>()
    for (let round = 0; round < 10; round++) {
      const fences = Array.from({ length: 100 }, (_, i) => `p${round * 100 + i}`)
      const claims = await Promise.all(fences.map((f) => s.claim(f, [f])))
      fences.forEach((f, i) => first.set(f, claims[i]!.generation))
      const res = await s.writeFenced(
        fences.map((f, i) => ({ fence: f, generation: claims[i]!.generation, ops: [{ type: 'put' as const, key: f, value: Buffer.from('1') }] })),
      )
      expect(res.refused).toEqual([])
      expect(s.cachedFences, `round ${round}`).toBeLessThanOrEqual(50)
    }
    // Every fence, evicted or not: a new owner claims, the old owner's generation is refused.
    const all = [...first.keys()]
    const next = await Promise.all(all.map((f) => s.claim(f, [f])))
    next.forEach((c, i) => expect(c.generation).toBe(first.get(all[i]!)! + 1))
    const stale = await s.writeFenced(
      all.map((f) => ({ fence: f, generation: first.get(f)!, ops: [{ type: 'put' as const, key: f, value: Buffer.from('stale') }] })),
    )
    expect(stale.refused).toHaveLength(all.length)
    const fresh = await s.writeFenced(
      all.map((f, i) => ({ fence: f, generation: next[i]!.generation, ops: [{ type: 'put' as const, key: f, value: Buffer.from('2') }] })),
    )
    expect(fresh.refused).toEqual([])
    expect((await s.getMany(all)).every((v) => v !== undefined && Buffer.from(v).toString() === '2')).toBe(true)
    expect(s.cachedFences).toBeLessThanOrEqual(50)
  })

  it("a handle whose entry was evicted, its slot taken by another fence, is only a hint: the fence's generation decides", async () => {
    const s = new LevelStorage({ location: join(tempDir('peony-level-'), 'db'), fenceCacheSize: 2 })
    made.push(s)
    await s.open()
    const put = (key: string, v: string) => ({ type: 'put' as const, key, value: Buffer.from(v) })
    const a0 = await s.claim('a', [])
    const a = await s.claim('a', [])
    expect(Number.isSafeInteger(a.handle)).toBe(true)
    expect((await s.writeFenced([{ fence: 'a', generation: a.generation, ops: [put('a', '1')], handle: a.handle }])).refused).toEqual([])
    // More fences than the cache holds: 'a' is evicted and its slot handed to another fence.
    const others = []
    for (const f of ['b', 'c', 'd', 'e']) {
      const c = await s.claim(f, [])
      others.push(c.handle)
      expect((await s.writeFenced([{ fence: f, generation: c.generation, ops: [put(f, '1')], handle: c.handle }])).refused).toEqual([])
    }
    expect(s.cachedFences).toBeLessThanOrEqual(2)
    expect(others).toContain(a.handle)
    // a's old handle now names another fence: a's own generation (read from disk again) decides.
    expect((await s.writeFenced([{ fence: 'a', generation: a.generation, ops: [put('a', '2')], handle: a.handle }])).refused).toEqual([])
    expect((await s.writeFenced([{ fence: 'a', generation: a0.generation, ops: [put('a', 'stale')], handle: a.handle }])).refused).toEqual([0])
    const a2 = await s.claim('a', ['a'])
    expect(Buffer.from(a2.values[0]!).toString()).toBe('2')
    expect((await s.writeFenced([{ fence: 'a', generation: a.generation, ops: [put('a', 'late')], handle: a2.handle }])).refused).toEqual([0])
    expect((await s.writeFenced([{ fence: 'a', generation: a2.generation, ops: [put('a', '3')], handle: a.handle }])).refused).toEqual([])
    expect(Buffer.from((await s.get('a'))!).toString()).toBe('3')
  })

  it('after a write of every cached fence (all marked used), eviction passes are bounded and the cache still comes back under its bound', async () => {
    const size = 1500
    const s = new LevelStorage({ location: join(tempDir('peony-level-'), 'db'), fenceCacheSize: size })
    made.push(s)
    await s.open()
    const fences = Array.from({ length: size }, (_, i) => `p${i}`)
    const claims = await Promise.all(fences.map((f) => s.claim(f, [])))
    const put = (key: string) => ({ type: 'put' as const, key, value: Buffer.from('1') })
    expect(
      (await s.writeFenced(fences.map((f, i) => ({ fence: f, generation: claims[i]!.generation, ops: [put(f)], handle: claims[i]!.handle })))).refused,
    ).toEqual([])
    // New fences: a pass gives at most 1024 more marked entries their second chance and stops; the
    // next passes find them unmarked and evict.
    for (let i = 0; i < 4; i++) await s.claim(`new${i}`, [])
    expect(s.cachedFences).toBeLessThanOrEqual(size)
    // Evicted or not, every fence still fences: the old generations are refused, the current accepted.
    const next = await Promise.all(fences.map((f) => s.claim(f, [])))
    const res = await s.writeFenced(
      fences.flatMap((f, i) => [
        { fence: f, generation: claims[i]!.generation, ops: [put(f)], handle: claims[i]!.handle },
        { fence: f, generation: next[i]!.generation, ops: [put(f)], handle: claims[i]!.handle },
      ]),
    )
    expect(res.refused).toEqual(fences.map((_, i) => 2 * i))
  })

  it('fenceCacheSize is checked', () => {
    expect(() => new LevelStorage({ location: '/tmp/x', fenceCacheSize: 0 })).toThrow(RangeError)
    expect(() => new LevelStorage({ location: '/tmp/x', fenceCacheSize: 1.5 })).toThrow(RangeError)
  })
})

describe('LevelStorage: fenced write batching', () => {
  const open: LevelStorage[] = []
  afterEach(async () => {
    for (const s of open.splice(0)) {
      await s.close()
      rmSync(s.location, { recursive: true, force: true })
    }
  })

  it('calls in flight that write the same fences land in call order, each split into several batches, again and again', async () => {
    const s = new LevelStorage({ location: join(tempDir('peony-level-'), 'db') })
    open.push(s)
    await s.open()
    const fences = Array.from({ length: 2500 }, (_, i) => `p${i}`)
    const gens = await Promise.all(fences.map((f) => s.acquire(f)))
    const value = (call: number) => new Uint8Array(600).fill(call)
    for (let round = 0; round < 3; round++) {
      // 2,500 writes of 600 bytes: three batches per call (1000 ops each at most), five calls at once.
      const calls = Array.from({ length: 5 }, (_, c) =>
        s.writeFenced(fences.map((fence, i) => ({ fence, generation: gens[i]!, ops: [{ type: 'put', key: fence, value: value(round * 5 + c + 1) }] }))),
      )
      for (const r of await Promise.all(calls)) expect(r.refused).toEqual([])
      const got = await s.getMany(fences)
      expect(got.every((v) => v !== undefined && v.byteLength === 600 && v[0] === round * 5 + 5 && v[599] === round * 5 + 5)).toBe(true)
    }
    // A claim after the calls reads the last one; the old owner's next write is refused.
    const c = await s.claim('p7', ['p7'])
    expect(c.values[0]?.[0]).toBe(15)
    expect((await s.writeFenced([{ fence: 'p7', generation: gens[7]!, ops: [{ type: 'put', key: 'p7', value: value(99) }] }])).refused).toEqual([0])
  })
})
