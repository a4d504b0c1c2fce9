/** Runs src/main.ts as `pnpm start` does (node + tsx), and watches its output. */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { afterEach } from 'vitest'
import { tempDir } from '@peony/test-utils'

export const APP_DIR = join(import.meta.dirname, '..', '..')

export interface Run {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  /** Resolves with the first stdout line matching `re`; rejects if the process exits first. */
  line: (re: RegExp) => Promise<string>
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const running = new Set<ChildProcess>()
afterEach(() => {
  for (const c of running) c.kill('SIGKILL')
  running.clear()
})

/**
 * Starts `node --conditions=@peony/source --import tsx src/main.ts …args` in apps/peony-server.
 * No PEONY_* variable of the test process reaches it; PEONY_STORAGE_PATH is a fresh temporary
 * directory (the default LevelDB storage: servers running at once must not share one), unless
 * `env` or a flag says otherwise.
 */
export function run(args: string[], env: Record<string, string> = {}): Run {
  const childEnv: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('PEONY_')) childEnv[k] = v
  const child = spawn(process.execPath, ['--conditions=@peony/source', '--import', 'tsx', 'src/main.ts', ...args], {
    cwd: APP_DIR,
    env: { ...childEnv, PEONY_STORAGE_PATH: join(tempDir(), 'db'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  running.add(child)
  let out = ''
  let err = ''
  const waiters = new Set<() => void>()
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d
    for (const w of waiters) w()
  })
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d))
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      running.delete(child)
      for (const w of waiters) w()
      resolve({ code, signal })
    }),
  )
  const line = (re: RegExp): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = out.split('\n').find((l) => re.test(l))
        if (found !== undefined) {
          waiters.delete(check)
          resolve(found)
        } else if (child.exitCode !== null || child.signalCode !== null) {
          waiters.delete(check)
          reject(new Error(`exited (${child.exitCode ?? child.signalCode}) before printing ${re}\nstdout:\n${out}\nstderr:\n${err}`))
        }
      }
      waiters.add(check)
      check()
    })
  return { child, stdout: () => out, stderr: () => err, line, exit }
}

/** A TCP port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}
