/**
 * A redis-server of the benchmark process's own, on a free port, without persistence (its CPU
 * counts as the run's own, not as noise). Used by the storage and sessions benchmarks.
 */
import { spawn } from 'node:child_process'
import { Redis } from 'ioredis'
import { freePort, sleep } from './run.mjs'

/** Starts a redis-server of this process's own on a free port (no persistence); resolves once it answers. */
export async function startRedis() {
  const port = await freePort()
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], {
    stdio: 'ignore',
  })
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  process.on('exit', () => proc.kill('SIGKILL'))
  const url = `redis://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    r.on('error', () => {})
    const ok = await r.connect().then(
      () => r.ping().then(() => true),
      () => false,
    )
    r.disconnect()
    if (ok) break
    if (i > 200) throw new Error('redis-server did not start')
    await sleep(25)
  }
  return {
    url,
    /** The redis-server's process id (its CPU time: /proc/<pid>/schedstat). */
    pid: proc.pid,
    async stop() {
      proc.kill('SIGKILL')
      await exited
    },
  }
}
