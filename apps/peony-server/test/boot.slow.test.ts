/**
 * The process entry (src/main.ts), run as `pnpm start` runs it: a real node process with tsx.
 * `--help` and configuration errors need nothing else; the boot tests start a real master with
 * worker threads on free ports, wait for the ready line, and check the signal handling and each
 * storage: LevelDB in a temporary directory (the default), memory, and a LevelDB directory
 * already held by another server (a real lock, not a mock).
 */
import { existsSync, statSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from '@peony/test-utils'
import { APP_DIR, freePort, run } from './helpers/run-server.ts'

describe('main.ts without a master', () => {
  it('--help prints every option and exits 0', async () => {
    const r = run(['--help'])
    const { code } = await r.exit
    expect(code).toBe(0)
    expect(r.stdout()).toContain('Usage: peony-server')
    expect(r.stdout()).toContain('--intake <endpoint>')
    expect(r.stdout()).toContain('PEONY_QUEUE_MAX_SIZE')
  })

  it('prints a coded error to stderr and exits 2 on invalid configuration', async () => {
    const r = run(['--workers', 'two', '--intake', 'udp://127.0.0.1:1'], { PEONY_QUEUE_MAXSIZE: '5' })
    const { code } = await r.exit
    expect(code).toBe(2)
    expect(r.stdout()).toBe('')
    const err = r.stderr()
    expect(err).toContain('PEONY_CONFIG_INVALID')
    expect(err).toContain('workers (flag --workers)')
    expect(err).toContain('intakeEndpoints[0] (flag --intake)')
    expect(err).toContain('did you mean "PEONY_QUEUE_MAX_SIZE"')
  })
})

// Boots the real master and worker threads (the example app from peony.config.json).
describe('main.ts boot', () => {
  it('prints one ready line, ignores SIGHUP, and exits 0 on SIGTERM', async () => {
    const [intake, fwd] = [await freePort(), await freePort()]
    // LevelDB (the default) two folders below a fresh one: the server creates the missing parent.
    const db = join(tempDir(), 'state', 'db')
    const r = run([
      '--intake',
      `tcp://127.0.0.1:${intake}`,
      '--forwarder',
      `tcp://127.0.0.1:${fwd}`,
      '--workers',
      '1',
      '--server-id',
      'boot-test',
      '--log-level',
      'warn',
      '--storage-path',
      db,
    ])
    const ready = await r.line(/^peony ready: /)
    expect(ready).toBe(
      `peony ready: server_id=boot-test intake=tcp://127.0.0.1:${intake} forwarder=tcp://127.0.0.1:${fwd} workers=1 (groups 1:1) storage=leveldb:${db} app=${join(APP_DIR, 'examples', 'idle-rpg', 'app.ts')}`,
    )
    expect(statSync(db).isDirectory()).toBe(true)
    expect(existsSync(join(db, 'LOCK'))).toBe(true)
    // Without a handler SIGHUP would kill the process (signal SIGHUP, no exit code).
    r.child.kill('SIGHUP')
    r.child.kill('SIGTERM')
    expect(await r.exit).toEqual({ code: 0, signal: null })
    expect(
      r
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('peony ready:')),
    ).toHaveLength(1)
  })

  it('boots with --storage memory and warns that sessions are lost on stop', async () => {
    const [intake, fwd] = [await freePort(), await freePort()]
    const r = run([
      '--storage',
      'memory',
      '--intake',
      `tcp://127.0.0.1:${intake}`,
      '--forwarder',
      `tcp://127.0.0.1:${fwd}`,
      '--workers',
      '1',
      '--log-level',
      'info',
    ])
    const ready = await r.line(/^peony ready: /)
    expect(ready).toContain(' storage=memory app=')
    expect(r.stdout()).toContain('storage is memory: every session is lost when the server stops')
    r.child.kill('SIGTERM')
    expect(await r.exit).toEqual({ code: 0, signal: null })
  })

  it('fails to start, exit 1, when another server holds the LevelDB directory (PEONY_STORAGE_LOCKED)', async () => {
    const db = join(tempDir(), 'db')
    const first = run([
      '--storage-path',
      db,
      '--intake',
      `tcp://127.0.0.1:${await freePort()}`,
      '--forwarder',
      `tcp://127.0.0.1:${await freePort()}`,
      '--workers',
      '1',
      '--log-level',
      'silent',
    ])
    await first.line(/^peony ready: /)
    const second = run([
      '--storage-path',
      db,
      '--intake',
      `tcp://127.0.0.1:${await freePort()}`,
      '--forwarder',
      `tcp://127.0.0.1:${await freePort()}`,
      '--workers',
      '1',
      '--log-level',
      'silent',
    ])
    expect((await second.exit).code).toBe(1)
    expect(second.stdout()).not.toContain('peony ready:')
    const err = second.stderr()
    expect(err).toContain('peony: start failed: PEONY_STORAGE_OPEN_FAILED: ')
    expect(err).toContain('PEONY_STORAGE_LOCKED')
    expect(err).toContain(db)
    // The first one is unharmed and stops cleanly.
    first.child.kill('SIGTERM')
    expect(await first.exit).toEqual({ code: 0, signal: null })
  })

  it('a second signal during the stop forces exit 1', async () => {
    const [intake, fwd] = [await freePort(), await freePort()]
    const r = run([
      '--app',
      'test/fixtures/stuck-stop-app.ts',
      '--intake',
      `tcp://127.0.0.1:${intake}`,
      '--forwarder',
      `tcp://127.0.0.1:${fwd}`,
      '--workers',
      '1',
      '--stop-timeout-ms',
      '60000',
      '--worker-close-timeout-ms',
      '30000',
      '--log-level',
      'info',
    ])
    await r.line(/^peony ready: /)
    r.child.kill('SIGTERM')
    await r.line(/stopping gracefully/)
    r.child.kill('SIGINT')
    expect(await r.exit).toEqual({ code: 1, signal: null })
  })

  it('an app that fails to load: one error line on stderr and one log line with its stack, whatever the worker count', async () => {
    const r = run([
      '--app',
      'test/fixtures/bad-import-app.ts',
      '--intake',
      `tcp://127.0.0.1:${await freePort()}`,
      '--forwarder',
      `tcp://127.0.0.1:${await freePort()}`,
      '--workers',
      '4',
      '--log-level',
      'info',
    ])
    expect((await r.exit).code).toBe(1)
    const errLines = r
      .stderr()
      .split('\n')
      .filter((l) => l.trim() !== '')
    expect(errLines, r.stderr()).toHaveLength(1)
    expect(errLines[0]).toMatch(/^peony: start failed: PEONY_WORKER_APP_LOAD_FAILED: .*does-not-exist\.ts/)
    const bad = r
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; err?: { stack?: string } })
      .filter((l) => l.level >= 40)
    expect(
      bad.map((l) => l.msg),
      r.stdout(),
    ).toHaveLength(1)
    expect(bad[0]!.msg).toMatch(/^start failed: /)
    expect(bad[0]!.err?.stack).toContain('bad-import-app.ts')
    expect(r.stdout()).not.toContain('peony ready:')
  })

  it('a TypeScript app in a CommonJS package: the error says to add "type": "module" (not only ERR_REQUIRE_CYCLE_MODULE)', async () => {
    const r = run([
      '--app',
      'test/fixtures/commonjs-package/app.ts',
      '--intake',
      `tcp://127.0.0.1:${await freePort()}`,
      '--forwarder',
      `tcp://127.0.0.1:${await freePort()}`,
      '--workers',
      '1',
      '--storage',
      'memory',
      '--log-level',
      'silent',
    ])
    expect((await r.exit).code).toBe(1)
    expect(r.stderr()).toMatch(
      /^peony: start failed: PEONY_WORKER_APP_LOAD_FAILED: .*commonjs-package\/app\.ts is TypeScript in a package whose package\.json has no "type": "module".*add "type": "module" to that package\.json, or name the file \.mts/,
    )
  })

  it('exits 1 with the error on stderr when the start fails (intake port taken)', async () => {
    const taken: Server = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    try {
      const port = (taken.address() as { port: number }).port
      const r = run(['--intake', `tcp://127.0.0.1:${port}`, '--forwarder', `tcp://127.0.0.1:${await freePort()}`, '--workers', '1', '--log-level', 'silent'])
      expect((await r.exit).code).toBe(1)
      expect(r.stderr()).toContain('peony: start failed')
      expect(r.stdout()).not.toContain('peony ready:')
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()))
    }
  })
})
