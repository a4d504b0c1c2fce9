/**
 * Redis for tests: use the one at PEONY_REDIS_URL (or redis://127.0.0.1:6379) when it answers a
 * PING, else start a throwaway `redis-server` on a free port. Under CI=true a missing Redis is an
 * error (the Redis tests must run there); elsewhere it is a loud warning and the tests skip.
 * `startRedisServer()` starts an instance a test can stop and start again (outage tests).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import { freePort } from './addresses.ts'

/** A Redis to test against. */
export interface TestRedis {
  /** redis://host:port of it. */
  url: string
  /** Stops it if this process started it (a no-op for an already running one). */
  stop(): Promise<void>
}

/** A redis-server started by this process. */
/** Options of {@link startRedisServer}. */
export interface StartRedisOptions {
  /** Keep data across stop/start: an append-only file (fsync always) in this directory. Default: nothing kept. */
  persistDir?: string | undefined
}

export interface RedisServer {
  url: string
  port: number
  /** SIGKILLs the server (an outage: no shutdown, no save). Resolves when it has exited. */
  stop(): Promise<void>
  /** Starts it again on the same port (no-op while running). Resolves when it answers PING. */
  start(): Promise<void>
  /** SIGSTOPs the server: connections stay open, nothing is answered (a hung server). */
  pause(): void
  /** SIGCONTs a paused server. */
  resume(): void
}

/** The redis-server binary (PEONY_REDIS_SERVER overrides). */
const REDIS_SERVER = process.env.PEONY_REDIS_SERVER ?? 'redis-server'

/** True when a Redis at `url` answers PING within `timeoutMs` (AUTH first if the URL has a password). */
export function pingRedis(url: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    let u: URL
    try {
      u = new URL(url)
    } catch {
      return resolve(false)
    }
    const sock = connect({ host: u.hostname || '127.0.0.1', port: Number(u.port || 6379) })
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      sock.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    let buf = ''
    sock.on('error', () => done(false))
    sock.on('connect', () => {
      const pass = u.password ? decodeURIComponent(u.password) : ''
      const user = u.username ? decodeURIComponent(u.username) : ''
      if (pass) sock.write(user ? `AUTH ${user} ${pass}\r\n` : `AUTH ${pass}\r\n`)
      sock.write('PING\r\n')
    })
    sock.on('data', (d) => {
      buf += d.toString('latin1')
      if (buf.includes('+PONG')) done(true)
      else if (buf.startsWith('-')) done(false)
    })
  })
}

const running = new Set<ChildProcess>()
let exitHooked = false

/** Starts `redis-server` on a free port with no persistence; rejects if it cannot be started. */
export async function startRedisServer(options: StartRedisOptions = {}): Promise<RedisServer> {
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  let child: ChildProcess | undefined
  if (!exitHooked) {
    exitHooked = true
    process.once('exit', () => {
      for (const c of running) c.kill('SIGKILL')
    })
  }
  const server: RedisServer = {
    url,
    port,
    async start() {
      if (child !== undefined) return
      const persist =
        options.persistDir === undefined ? ['--appendonly', 'no'] : ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', options.persistDir]
      const c = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persist, '--daemonize', 'no', '--loglevel', 'warning'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      })
      child = c
      running.add(c)
      let stderr = ''
      c.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
      const failed = new Promise<never>((_, reject) => {
        c.once('error', (err) => reject(err))
        c.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${stderr.trim()}`)))
      })
      failed.catch(() => undefined)
      c.once('exit', () => {
        running.delete(c)
        if (child === c) child = undefined
      })
      const deadline = Date.now() + 10_000
      for (;;) {
        const ok = await Promise.race([pingRedis(url, 200), failed])
        if (ok) return
        if (Date.now() > deadline) {
          c.kill('SIGKILL')
          throw new Error(`redis-server on port ${port} did not answer within 10 s`)
        }
        await new Promise((r) => setTimeout(r, 25))
      }
    },
    pause() {
      child?.kill('SIGSTOP')
    },
    resume() {
      child?.kill('SIGCONT')
    },
    async stop() {
      const c = child
      if (c === undefined) return
      child = undefined
      await new Promise<void>((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) return resolve()
        c.once('exit', () => resolve())
        c.kill('SIGKILL')
      })
    },
  }
  await server.start()
  return server
}

/**
 * A Redis for the tests of this process: PEONY_REDIS_URL (or the default URL) if it answers,
 * else a redis-server started here. Neither: throws under CI=true, else warns and returns
 * undefined (gate the tests with `describe.skipIf(!redis)`).
 */
export async function redisForTests(): Promise<TestRedis | undefined> {
  const url = process.env.PEONY_REDIS_URL ?? 'redis://127.0.0.1:6379'
  if (await pingRedis(url)) return { url, stop: async () => {} }
  let started: RedisServer | undefined
  let why: unknown
  try {
    started = await startRedisServer()
  } catch (err) {
    why = err
  }
  if (started !== undefined) return { url: started.url, stop: started.stop }
  const msg = `no Redis for the tests: ${url} does not answer PING and ${REDIS_SERVER} could not be started (${why instanceof Error ? why.message : String(why)})`
  if (process.env.CI === 'true') throw new Error(msg)
  const bar = '!'.repeat(78)
  process.stderr.write(`\n${bar}\n!! ${msg}\n!! The Redis tests are SKIPPED. Install redis-server or set PEONY_REDIS_URL.\n${bar}\n\n`)
  return undefined
}
