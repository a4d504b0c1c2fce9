import { afterEach, describe, expect, it } from 'vitest'
import { uniqAddress, waitFor } from '@peony/test-utils'
import { createBrokerClient } from '../src/broker-client.ts'
import type { BrokerClient, BrokerClientOptions } from '../src/broker-client.ts'
import { BrokerErrorCode, chooseServer, isPeonyError, type PeonyError, type Task } from '@peony/protocol'
import { createIntakeServer } from '../src/intake-server.ts'
import type { IntakeServer } from '../src/intake-server.ts'

const cleanup: (() => unknown)[] = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn()
})

interface Peony {
  srv: IntakeServer
  tasks: Task[]
  frameSizes: number[]
}

async function peony(endpoint: string, maxFrameBytes?: number): Promise<Peony> {
  const tasks: Task[] = []
  const srv = createIntakeServer({
    endpoints: [endpoint],
    onTasks: (t) => tasks.push(...t),
    ...(maxFrameBytes === undefined ? {} : { maxFrameBytes }),
  })
  cleanup.push(() => srv.close())
  await srv.open()
  return { srv, tasks, frameSizes: [] }
}

function client(options: BrokerClientOptions): BrokerClient {
  const c = createBrokerClient(options)
  cleanup.push(() => c.close())
  return c
}

describe('broker client', () => {
  it('coalesces the tasks of one event-loop turn into few frames', async () => {
    const ep = await uniqAddress('tcp')
    const p = await peony(ep)
    const c = client({ servers: [{ id: 'p1', endpoint: ep }] })
    await waitFor(() => p.srv.stats().brokers === 1)
    for (let i = 1; i <= 500; i++) expect(c.send({ cmd: 10, uid: i, custom: i })).toBe(true)
    await c.flush()
    await waitFor(() => p.tasks.length === 500)
    const messages = p.srv.stats().messages
    expect(messages).toBeLessThan(500)
    expect(messages).toBeLessThanOrEqual(2)
    expect(c.stats()).toMatchObject({ sent: 500, buffered: 0, overflow: 0 })
    expect(c.stats().frames).toBe(messages)
    expect(p.tasks.map((t) => t.custom)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1))
  })

  it('splits batches under maxFrameBytes', async () => {
    const ep = await uniqAddress('tcp')
    const p = await peony(ep, 400)
    const c = client({ servers: [{ id: 'p1', endpoint: ep }], maxFrameBytes: 400 })
    for (let i = 1; i <= 60; i++) c.send({ cmd: 10, uid: i, body: new Uint8Array(40) })
    await c.flush()
    await waitFor(() => p.tasks.length === 60)
    expect(p.srv.stats().rejected).toBe(0)
    expect(p.srv.stats().messages).toBeGreaterThan(5)
  })

  it('sends each task to the server chooseServer picks, keeping per-key order', async () => {
    const ids = ['peony-a', 'peony-b', 'peony-c']
    const eps = await Promise.all(ids.map(() => uniqAddress('tcp')))
    const peonies = await Promise.all(eps.map((ep) => peony(ep)))
    const c = client({ servers: ids.map((id, i) => ({ id, endpoint: eps[i] as string })) })
    const sent: Task[] = []
    let n = 0
    for (let round = 0; round < 5; round++) {
      for (let uid = 1; uid <= 40; uid++) sent.push({ cmd: 10, uid, custom: ++n })
      for (const s of ['alice', 'bob', '玩家']) sent.push({ cmd: 10, uid: s, custom: ++n })
      sent.push({ cmd: 15, nodeId: 2, connId: 2n ** 40n + BigInt(round), custom: ++n })
      sent.push({ cmd: 100, custom: ++n }) // no routing key: the smallest id
    }
    for (const t of sent) c.send(t)
    await c.flush()
    await waitFor(() => peonies.reduce((a, p) => a + p.tasks.length, 0) === sent.length)
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as string
      const expected = sent.filter((t) => chooseServer(ids, t) === id).map((t) => t.custom)
      expect((peonies[i] as Peony).tasks.map((t) => t.custom)).toEqual(expected)
      expect(expected.length).toBeGreaterThan(0)
      expect(c.serverFor(sent[0] as Task)).toBe(chooseServer(ids, sent[0] as Task))
    }
    expect((peonies[0] as Peony).tasks.some((t) => t.cmd === 100)).toBe(true)
  })

  it('buffers while a server is away and delivers in order once it appears', async () => {
    const ep = await uniqAddress('tcp')
    const c = client({ servers: [{ id: 'p1', endpoint: ep }] })
    for (let i = 1; i <= 100; i++) c.send({ cmd: 10, uid: 1, custom: i })
    const flushed = c.flush()
    let done = false
    void flushed.then(() => (done = true))
    await new Promise((r) => setTimeout(r, 100))
    expect(done).toBe(false)
    expect(c.stats().buffered).toBe(100)
    const p = await peony(ep)
    for (let i = 101; i <= 150; i++) c.send({ cmd: 10, uid: 1, custom: i })
    await flushed
    await waitFor(() => p.tasks.length === 150)
    expect(p.tasks.map((t) => t.custom)).toEqual(Array.from({ length: 150 }, (_, i) => i + 1))
  })

  it('drops the newest beyond bufferMax while a server is away, and counts them', async () => {
    const ep = await uniqAddress('tcp')
    const c = client({ servers: [{ id: 'p1', endpoint: ep }], bufferMax: 10 })
    const accepted: boolean[] = []
    for (let i = 1; i <= 15; i++) accepted.push(c.send({ cmd: 10, uid: 1, custom: i }))
    expect(accepted.filter(Boolean)).toHaveLength(10)
    expect(accepted.slice(10)).toEqual([false, false, false, false, false])
    expect(c.stats()).toMatchObject({ overflow: 5, buffered: 10 })
    const p = await peony(ep)
    await c.flush()
    await waitFor(() => p.tasks.length === 10)
    expect(p.tasks.map((t) => t.custom)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  })

  it('close resolves with a server away, discarding the buffer and rejecting pending flushes', async () => {
    const ep = await uniqAddress('tcp')
    const c = createBrokerClient({ servers: [{ id: 'p1', endpoint: ep }] })
    for (let i = 1; i <= 5; i++) c.send({ cmd: 10, uid: i })
    const flushed = c.flush().catch((e: unknown) => e)
    await c.close({ lingerMs: 50 })
    expect(c.status).toBe('closed')
    expect(isPeonyError(await flushed, BrokerErrorCode.NOT_OPEN)).toBe(true)
    expect(c.stats().discarded).toBe(5)
    expect(() => c.send({ cmd: 10, uid: 1 })).toThrow(expect.objectContaining({ code: BrokerErrorCode.NOT_OPEN }))
  })

  it('close with lingerMs hands the buffer over when the server is there', async () => {
    const ep = await uniqAddress('tcp')
    const p = await peony(ep)
    const c = createBrokerClient({ servers: [{ id: 'p1', endpoint: ep }] })
    for (let i = 1; i <= 20; i++) c.send({ cmd: 10, uid: i })
    await c.close({ lingerMs: 2000 })
    await waitFor(() => p.tasks.length === 20)
    expect(c.stats().discarded).toBe(0)
  })

  it('drops a task that cannot be encoded, reports it, and sends the rest of its batch', async () => {
    const ep = await uniqAddress('tcp')
    const p = await peony(ep)
    const errors: PeonyError[] = []
    const c = client({ servers: [{ id: 'p1', endpoint: ep }], onError: (e) => errors.push(e) })
    c.send({ cmd: 10, uid: 1 })
    c.send({ cmd: 10, uid: 2, tag: 2 ** 40 }) // tag is int32
    c.send({ cmd: 10, uid: 3 })
    await c.flush()
    await waitFor(() => p.tasks.length === 2)
    expect(p.tasks.map((t) => t.uid)).toEqual([1, 3])
    expect(c.stats().encodeFailed).toBe(1)
    expect(errors.map((e) => e.code)).toEqual([BrokerErrorCode.ENCODE_FAILED])
  })

  it('validates its options', () => {
    expect(() => createBrokerClient({ servers: [] })).toThrow(TypeError)
    expect(() => createBrokerClient({ servers: [{ id: '', endpoint: 'tcp://127.0.0.1:1' }] })).toThrow(TypeError)
    expect(() =>
      createBrokerClient({
        servers: [
          { id: 'a', endpoint: 'tcp://127.0.0.1:1' },
          { id: 'a', endpoint: 'tcp://127.0.0.1:2' },
        ],
      }),
    ).toThrow(TypeError)
    expect(() => createBrokerClient({ servers: [{ id: 'a', endpoint: 'nope' }] })).toThrow(TypeError)
    expect(() => createBrokerClient({ servers: [{ id: 'a', endpoint: 'tcp://127.0.0.1:1' }], bufferMax: -1 })).toThrow(RangeError)
  })
})
