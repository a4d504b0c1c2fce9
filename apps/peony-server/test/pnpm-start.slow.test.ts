/**
 * The README's command, `pnpm --filter peony-server start`, stopped the way an operator or a
 * process manager does: SIGTERM to the pnpm process it started. pnpm passes the signal to its
 * child only; the start script `exec`s node, so that child is the server itself and stops
 * gracefully. (Before, a shell sat between them, died of the signal and left the server running,
 * orphaned, with its port and its LevelDB lock.)
 */
import { execFileSync, spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir, waitFor } from '@peony/test-utils'
import { APP_DIR, freePort } from './helpers/run-server.ts'

function pnpmPath(): string | undefined {
  try {
    return execFileSync('sh', ['-c', 'command -v pnpm'], { encoding: 'utf8' }).trim() || undefined
  } catch {
    return undefined
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const pnpm = pnpmPath()
if (!pnpm) console.warn('pnpm-start.test: SKIPPED, no pnpm on PATH')

describe.skipIf(!pnpm)('pnpm --filter peony-server start', () => {
  it('stops the server gracefully when pnpm receives SIGTERM (no orphan)', { timeout: 60_000 }, async () => {
    const env: Record<string, string> = {}
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('PEONY_') && !k.startsWith('npm_')) env[k] = v
    const intake = `tcp://127.0.0.1:${await freePort()}`
    const forwarder = `tcp://127.0.0.1:${await freePort()}`
    const child = spawn(pnpm!, ['--filter', 'peony-server', 'start', '--', '--intake', intake, '--forwarder', forwarder, '--workers', '1'], {
      cwd: join(APP_DIR, '..', '..'),
      env: { ...env, PEONY_STORAGE_PATH: join(tempDir(), 'db') },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d))
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()))
    let serverPid: number | undefined
    try {
      // pino writes asynchronously: the "master open" line may come after the ready line.
      await waitFor(() => /peony ready: /.test(out) && /"msg":"master open"/.test(out), { timeoutMs: 40_000 })
      const m = /"msg":"master open"/.test(out) ? /"pid":(\d+)/.exec(out) : null
      serverPid = m ? Number(m[1]) : undefined
      expect(serverPid, out).toBeTypeOf('number')
      expect(serverPid).not.toBe(child.pid)
      child.kill('SIGTERM')
      await exited
      await waitFor(() => !alive(serverPid!), { timeoutMs: 15_000 })
      expect(out).toMatch(/"msg":"stopped"/)
    } finally {
      if (serverPid !== undefined && alive(serverPid)) process.kill(serverPid, 'SIGKILL')
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  })
})
