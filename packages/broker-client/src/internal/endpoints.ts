/**
 * Endpoint helpers shared by the ZeroMQ parts: validation, the `ipc://` live-path probe that
 * turns "another server already serves this path" into a start-up error instead of libzmq's
 * silent takeover (libzmq unlinks an existing ipc file on bind), and zeromq error inspection.
 */
import { connect } from 'node:net'
import { lstat, unlink } from 'node:fs/promises'

const ENDPOINT_RE = /^(tcp|ipc|inproc):\/\/.+/

/** Throws a TypeError unless `endpoint` looks like `tcp://…`, `ipc://…` or `inproc://…`. */
export function assertEndpoint(endpoint: unknown, what: string): asserts endpoint is string {
  if (typeof endpoint !== 'string' || !ENDPOINT_RE.test(endpoint)) {
    throw new TypeError(`${what} must be a tcp://, ipc:// or inproc:// endpoint, got ${JSON.stringify(endpoint)}`)
  }
}

/** The filesystem path of an `ipc://` endpoint, or undefined for other transports and abstract (`ipc://@name`) sockets. */
export function ipcPath(endpoint: string): string | undefined {
  if (!endpoint.startsWith('ipc://')) return undefined
  const p = endpoint.slice('ipc://'.length)
  if (p.startsWith('@')) return undefined
  return p
}

/** What the probe found at an ipc path. */
export type IpcProbe = 'free' | 'live' | 'stale'

/**
 * Probes a unix socket path: `free` (no file), `live` (something accepts connections) or
 * `stale` (a file nobody listens on: ECONNREFUSED). Any other error counts as `live`, so a path
 * we cannot judge is never taken over.
 */
export function probeIpcPath(path: string, timeoutMs = 1000): Promise<IpcProbe> {
  return new Promise((resolve) => {
    const sock = connect({ path })
    let done = false
    const finish = (r: IpcProbe): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      resolve(r)
    }
    const timer = setTimeout(() => finish('live'), timeoutMs)
    sock.once('connect', () => finish('live'))
    sock.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') finish('free')
      else if (err.code === 'ECONNREFUSED') finish('stale')
      else finish('live')
    })
  })
}

/**
 * Removes a stale socket file; a file that vanished meanwhile is fine. Refuses (throws an Error)
 * to remove anything that is not a socket, so a mistyped path never deletes a user's file.
 */
export async function removeStale(path: string): Promise<void> {
  try {
    const st = await lstat(path)
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`)
    await unlink(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

/** The `code` of a zeromq (or Node) error, if any. */
export function errCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const c = (err as { code?: unknown }).code
  return typeof c === 'string' ? c : undefined
}
