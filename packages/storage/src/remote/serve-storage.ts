/**
 * serveStorage: the host side of a remote storage. A storage host thread opens the one LevelDB
 * handle of the process and serves each worker thread's RemoteStorage over its own MessagePort.
 * Requests start in arrival order and run concurrently, through the storage's public calls minus
 * their argument checks (the client made them; status, prefix and in-flight tracking still apply).
 * Errors go back with their code and retryable flag.
 */
import type { MessagePort } from 'node:worker_threads'
import { type AbstractStorage, type UncheckedCalls, uncheckedCalls } from '../storage.ts'
import { type Hello, type Request, type Response, ownBuffer, packValues, toWireError, transferOf, unpackKeys, unpackOps, unpackWrites } from './codec.ts'

/** What serveStorage returns. */
export interface StorageServer {
  /** Stops serving and closes the port (the client's pending calls reject with PEONY_STORAGE_CLOSED). Does not close the storage. */
  close(): void
}

/** Serves `storage` on `port` (a worker_threads MessagePort) until the port closes. Returns a handle to stop serving. */
export function serveStorage(storage: AbstractStorage, port: MessagePort): StorageServer {
  // The RemoteStorage at the other end checked every argument already.
  const calls = uncheckedCalls(storage)
  let closed = false
  const reply = (res: Response, transfer: ArrayBuffer[] = []): void => {
    if (!closed) port.postMessage(res, transfer)
  }
  const answer = (i: number, [r, transfer, back]: Answer): void => {
    // The values buffer of a write that succeeded goes back to the client for reuse (nothing
    // reads it any more; an empty or already detached one is not worth sending).
    if (back === undefined || back.byteLength === 0) reply({ i, ok: true, r }, transfer)
    else reply({ i, ok: true, r, b: back }, [...(transfer ?? []), back])
  }
  const onMessage = (msg: Request): void => {
    const i = msg?.i
    if (typeof i !== 'number') return
    let run: Promise<Answer>
    try {
      run = handle(storage, calls, msg)
    } catch (err) {
      run = Promise.reject(err)
    }
    run.then(
      (a) => answer(i, a),
      (err: unknown) => reply({ i, ok: false, e: toWireError(err) }),
    )
  }
  const stop = (): void => {
    if (closed) return
    closed = true
    port.off('message', onMessage)
    port.off('close', stop)
  }
  port.on('message', onMessage)
  port.on('close', stop)
  return {
    close() {
      stop()
      port.close()
    },
  }
}

/** A call's result, the buffers to transfer with it, and the request's values buffer to hand back. */
type Answer = [unknown, ArrayBuffer[]?, ArrayBuffer?]

async function handle(storage: AbstractStorage, calls: UncheckedCalls, m: Request): Promise<Answer> {
  switch (m.op) {
    case 'hello': {
      const hello: Hello = { supports: { ...storage.supports } }
      return [hello]
    }
    case 'get': {
      const v = await calls.get(m.key)
      if (v === undefined) return [null]
      const b = ownBuffer(v)
      return [b, [b]]
    }
    case 'getMany': {
      const p = packValues(await calls.getMany(unpackKeys(m.keys)))
      return [p, transferOf(p)]
    }
    case 'put':
      return [await calls.put(m.key, new Uint8Array(m.value))]
    case 'del':
      return [await calls.del(m.key)]
    case 'batch':
      return [await calls.batch(unpackOps(m.ops)), undefined, m.ops.data]
    case 'acquire':
      return [await calls.acquire(m.fence)]
    case 'claim': {
      const { generation, values, handle } = await calls.claim(m.fence, unpackKeys(m.keys))
      const p = packValues(values)
      return [handle === undefined ? { generation, values: p } : { generation, values: p, handle }, transferOf(p)]
    }
    case 'writeFenced':
      return [await calls.writeFenced(unpackWrites(m)), undefined, m.ops.data]
    default:
      throw new TypeError(`unknown remote storage op ${JSON.stringify((m as { op?: unknown }).op)}`)
  }
}
