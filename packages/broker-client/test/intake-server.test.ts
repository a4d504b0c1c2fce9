import { spawnSync } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import * as zmq from 'zeromq'
import { tempDir, uniqAddress, waitFor } from '@peony/test-utils'
import { BrokerErrorCode, encodeTask, encodeTasks, isPeonyError, type PeonyError, type Rejection, type Task } from '@peony/protocol'
import { createIntakeServer } from '../src/intake-server.ts'
import type { IntakeServer, IntakeServerOptions } from '../src/intake-server.ts'

const cleanup: (() => unknown)[] = []
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn()
})

interface Received {
  tasks: Task[]
  broker: string
}

function server(options: Partial<IntakeServerOptions> & { endpoints: string[] }): {
  srv: IntakeServer
  got: Received[]
  rejects: { r: Rejection; broker: string }[]
  errors: PeonyError[]
} {
  const got: Received[] = []
  const rejects: { r: Rejection; broker: string }[] = []
  const errors: PeonyError[] = []
  const srv = createIntakeServer({
    onTasks: (tasks, id) => got.push({ tasks, broker: Buffer.from(id).toString('hex') }),
    onReject: (r, id) => rejects.push({ r, broker: Buffer.from(id).toString('hex') }),
    onError: (e) => errors.push(e),
    ...options,
  })
  cleanup.push(() => srv.close())
  return { srv, got, rejects, errors }
}

function dealer(endpoint: string): zmq.Dealer {
  const d = new zmq.Dealer({ linger: 0 })
  d.connect(endpoint)
  cleanup.push(() => d.close())
  return d
}

const allTasks = (got: Received[]): Task[] => got.flatMap((g) => g.tasks)

describe('intake server', () => {
  it('binds tcp and ipc endpoints at once, resolves port 0, and reads tasks from brokers on each', async () => {
    const ipc = await uniqAddress('ipc')
    const { srv, got } = server({ endpoints: ['tcp://127.0.0.1:0', ipc] })
    expect(srv.status).toBe('closed')
    await srv.open()
    expect(srv.status).toBe('open')
    const [tcp, ipcBound] = srv.endpoints
    expect(tcp).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/)
    expect(tcp).not.toBe('tcp://127.0.0.1:0')
    expect(ipcBound).toBe(ipc)

    const a = dealer(tcp as string)
    const b = dealer(ipc)
    await a.send(
      encodeTasks([
        { cmd: 10, uid: 1 },
        { cmd: 10, uid: 2n ** 40n },
      ]),
    )
    await b.send(encodeTask({ cmd: 15, nodeId: 3, connId: 9 }))
    await waitFor(() => allTasks(got).length === 3)
    const byBroker = new Map<string, Task[]>()
    for (const g of got) byBroker.set(g.broker, [...(byBroker.get(g.broker) ?? []), ...g.tasks])
    expect(byBroker.size).toBe(2)
    expect(allTasks(got)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ cmd: 10, uid: 1 }),
        expect.objectContaining({ cmd: 10, uid: 2 ** 40 }),
        expect.objectContaining({ cmd: 15, nodeId: 3, connId: 9 }),
      ]),
    )
    expect(srv.stats()).toMatchObject({ messages: 2, tasks: 3, rejected: 0 })
    await srv.close()
    expect(srv.status).toBe('closed')
  })

  it('keeps the order of one broker connection across many messages', async () => {
    const { srv, got } = server({ endpoints: [await uniqAddress('tcp')] })
    await srv.open()
    const d = dealer(srv.endpoints[0] as string)
    for (let i = 1; i <= 200; i++) await d.send(encodeTasks([{ cmd: 10, uid: 7, custom: i }]))
    await waitFor(() => allTasks(got).length === 200)
    expect(allTasks(got).map((t) => t.custom)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1))
  })

  it('rejects a multipart message whole, and the connection goes on', async () => {
    const { srv, got, rejects } = server({ endpoints: [await uniqAddress('tcp')] })
    await srv.open()
    const d = dealer(srv.endpoints[0] as string)
    await d.send([encodeTask({ cmd: 10, uid: 1 }), encodeTask({ cmd: 10, uid: 2 })])
    await d.send(encodeTask({ cmd: 10, uid: 3 }))
    await waitFor(() => got.length === 1 && rejects.length === 1)
    expect(rejects[0]?.r).toMatchObject({ code: BrokerErrorCode.MULTIPART, index: -1 })
    expect(allTasks(got)).toEqual([expect.objectContaining({ uid: 3 })])
    expect(srv.stats().rejects).toEqual({ [BrokerErrorCode.MULTIPART]: 1 })
    expect(got[0]?.broker).toBe(rejects[0]?.broker)
  })

  it('rejects a frame over maxFrameBytes before decoding, and the connection goes on', async () => {
    const { srv, got, rejects } = server({ endpoints: [await uniqAddress('tcp')], maxFrameBytes: 256 })
    await srv.open()
    const d = dealer(srv.endpoints[0] as string)
    const big = encodeTask({ cmd: 10, uid: 1, body: new Uint8Array(300) })
    expect(big.length).toBeGreaterThan(256)
    await d.send(big)
    // Not even msgpack: proves the size check comes first.
    await d.send(Buffer.alloc(1000, 0xc1))
    await d.send(encodeTask({ cmd: 10, uid: 2, body: new Uint8Array(10) }))
    await waitFor(() => got.length === 1 && rejects.length === 2)
    expect(rejects.map((r) => r.r.code)).toEqual([BrokerErrorCode.FRAME_TOO_LARGE, BrokerErrorCode.FRAME_TOO_LARGE])
    expect(allTasks(got)).toEqual([expect.objectContaining({ uid: 2 })])
  })

  it('one bad element of a batch is one rejection; garbage frames never stop the loop', async () => {
    const { srv, got, rejects } = server({ endpoints: [await uniqAddress('tcp')] })
    await srv.open()
    const d = dealer(srv.endpoints[0] as string)
    // [ {cmd:10,uid:1}, "x", {cmd:10,uid:2} ]: a 3-array with a str in the middle.
    const a = encodeTask({ cmd: 10, uid: 1 })
    const b = encodeTask({ cmd: 10, uid: 2 })
    await d.send(Buffer.concat([Buffer.from([0x93]), a, Buffer.from([0xa1, 0x78]), b]))
    await d.send(Buffer.from([0xc1]))
    await d.send(Buffer.alloc(0))
    await d.send(Buffer.from([0x81, 0xa3]))
    await d.send(encodeTask({ cmd: 10, uid: 3 }))
    await waitFor(() => allTasks(got).length === 3 && rejects.length >= 4)
    expect(allTasks(got).map((t) => t.uid)).toEqual([1, 2, 3])
    expect(rejects[0]?.r).toMatchObject({ code: BrokerErrorCode.NOT_A_MAP, index: 1 })
    expect(srv.stats().rejected).toBe(rejects.length)
    expect(srv.status).toBe('open')
  })

  it('a throwing onTasks is reported and the loop keeps reading', async () => {
    let calls = 0
    const { srv, errors } = server({
      endpoints: [await uniqAddress('tcp')],
      onTasks: () => {
        calls++
        if (calls === 1) throw new Error('boom')
      },
    })
    await srv.open()
    const d = dealer(srv.endpoints[0] as string)
    await d.send(encodeTask({ cmd: 10, uid: 1 }))
    await d.send(encodeTask({ cmd: 10, uid: 2 }))
    await waitFor(() => calls === 2)
    expect(errors).toHaveLength(1)
    expect(errors[0]?.code).toBe(BrokerErrorCode.CALLBACK_FAILED)
    expect(srv.stats().errors).toBe(1)
  })

  it('counts connected brokers from the socket events (zeromq 6 accept/disconnect)', async () => {
    const ipc = await uniqAddress('ipc')
    const { srv } = server({ endpoints: [await uniqAddress('tcp'), ipc] })
    await srv.open()
    expect(srv.stats().brokers).toBe(0)
    const a = dealer(srv.endpoints[0] as string)
    dealer(srv.endpoints[0] as string)
    dealer(ipc)
    await waitFor(() => srv.stats().brokers === 3)
    a.close()
    await waitFor(() => srv.stats().brokers === 2)
    await srv.close()
    expect(srv.stats().brokers).toBe(0)
  })

  it('refuses an ipc path that a live server serves, and leaves that server working', async () => {
    const ipc = await uniqAddress('ipc')
    const first = server({ endpoints: [ipc] })
    await first.srv.open()
    const second = server({ endpoints: [await uniqAddress('tcp'), ipc] })
    const err = await second.srv.open().catch((e: unknown) => e)
    expect(isPeonyError(err, BrokerErrorCode.ENDPOINT_IN_USE)).toBe(true)
    expect((err as Error).message).toContain(ipc)
    expect(second.srv.status).toBe('closed')
    // The first server still owns the path.
    const d = dealer(ipc)
    await d.send(encodeTask({ cmd: 10, uid: 1 }))
    await waitFor(() => first.got.length === 1)
  })

  it('reuses a stale ipc path left by a dead process', async () => {
    const dir = tempDir()
    const path = join(dir, 'stale.sock')
    // A process that listens on the path and dies without cleaning up.
    const r = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`])
    expect(r.signal).toBe('SIGKILL')
    expect(existsSync(path)).toBe(true)
    const { srv, got } = server({ endpoints: [`ipc://${path}`] })
    await srv.open()
    const d = dealer(`ipc://${path}`)
    await d.send(encodeTask({ cmd: 10, uid: 1 }))
    await waitFor(() => got.length === 1)
  })

  it('never deletes a regular file at an ipc path', async () => {
    const path = join(tempDir(), 'not-a-socket')
    writeFileSync(path, 'precious')
    const { srv } = server({ endpoints: [`ipc://${path}`] })
    const err = await srv.open().catch((e: unknown) => e)
    expect(isPeonyError(err, BrokerErrorCode.ENDPOINT_FAILED)).toBe(true)
    expect(existsSync(path)).toBe(true)
  })

  it('a failed bind names the endpoint and leaves nothing bound', async () => {
    const taken = await uniqAddress('tcp')
    const holder = server({ endpoints: [taken] })
    await holder.srv.open()
    const free = await uniqAddress('tcp')
    const { srv } = server({ endpoints: [free, taken] })
    const err = await srv.open().catch((e: unknown) => e)
    expect(isPeonyError(err, BrokerErrorCode.ENDPOINT_FAILED)).toBe(true)
    expect((err as Error).message).toContain(taken)
    expect(srv.status).toBe('closed')
    // `free` was released: another server can bind it.
    const again = server({ endpoints: [free] })
    await again.srv.open()
    expect(again.srv.status).toBe('open')
  })

  it('open and close are idempotent, and a closed server can open again', async () => {
    const ep = await uniqAddress('tcp')
    const { srv, got } = server({ endpoints: [ep] })
    await Promise.all([srv.open(), srv.open()])
    await Promise.all([srv.close(), srv.close()])
    expect(srv.status).toBe('closed')
    await srv.open()
    const d = dealer(ep)
    await d.send(encodeTask({ cmd: 10, uid: 5 }))
    await waitFor(() => got.length === 1)
  })

  it('validates its options', () => {
    const onTasks = (): void => {}
    expect(() => createIntakeServer({ endpoints: [], onTasks })).toThrow(TypeError)
    expect(() => createIntakeServer({ endpoints: ['http://x'], onTasks })).toThrow(TypeError)
    expect(() => createIntakeServer({ endpoints: ['tcp://127.0.0.1:1', 'tcp://127.0.0.1:1'], onTasks })).toThrow(TypeError)
    expect(() => createIntakeServer({ endpoints: ['tcp://127.0.0.1:1'], onTasks, maxFrameBytes: 0 })).toThrow(RangeError)
    expect(() => createIntakeServer({ endpoints: ['tcp://127.0.0.1:1'] } as unknown as IntakeServerOptions)).toThrow(TypeError)
  })
})
