/**
 * Addresses and temporary paths for tests: free tcp ports from the OS, unique ipc paths and
 * inproc names, and temporary directories removed when the process exits.
 */
import { createServer } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A ZeroMQ transport used in tests. */
export type Transport = 'tcp' | 'ipc' | 'inproc'

let counter = 0
const run = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`

/** A tcp port that was free a moment ago (the OS picked it for a listener we closed at once). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })
}

/**
 * A unique endpoint for `proto`: `tcp://127.0.0.1:<free port>`, `ipc://<tmpdir>/peony-….sock`
 * or `inproc://peony-…`. Async because the tcp port comes from the OS.
 */
export async function uniqAddress(proto: Transport): Promise<string> {
  const n = ++counter
  switch (proto) {
    case 'tcp':
      return `tcp://127.0.0.1:${await freePort()}`
    case 'ipc':
      return `ipc://${join(tmpdir(), `peony-${run}-${n}.sock`)}`
    case 'inproc':
      return `inproc://peony-${run}-${n}`
    default:
      throw new TypeError(`unknown transport ${String(proto)}`)
  }
}

/** The transports to run a transport test over: the ones given, or all three. For `describe.each`. */
export function testTransports(...protos: Transport[]): Transport[] {
  return protos.length > 0 ? protos : ['tcp', 'ipc', 'inproc']
}

const dirs: string[] = []
let hooked = false

/** A new empty directory under the OS temp dir, removed (recursively) when the process exits. */
export function tempDir(prefix = 'peony-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(dir)
  if (!hooked) {
    hooked = true
    process.once('exit', () => {
      for (const d of dirs) rmSync(d, { recursive: true, force: true })
    })
  }
  return dir
}
