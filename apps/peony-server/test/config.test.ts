/**
 * The configuration loader: defaults, the precedence of file ← env ← flags, every validation
 * error path, and relative path resolution. Problems are asserted by code and by the issue's
 * key/source/suggestion, never by message text (except that the message names them).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { isPeonyError } from '@peony/protocol'
import { describeConfig, describeConfigKeys, helpText, loadConfig, wantsHelp, workerCount, type LoadConfigInput, type ServerConfig } from '../src/config.ts'
import type { ConfigError, ConfigIssue } from '../src/errors.ts'
import { toMasterInput } from '../src/master-input.ts'
import { formatReadyLine } from '../src/ready-line.ts'

const root = mkdtempSync(join(tmpdir(), 'peony-config-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

let n = 0
/** A fresh folder with an app module in it. */
function folder(): { dir: string; app: string } {
  const dir = join(root, `case-${++n}`)
  mkdirSync(dir, { recursive: true })
  const app = join(dir, 'app.ts')
  writeFileSync(app, 'export default {}\n')
  return { dir, app }
}

function write(dir: string, name: string, content: unknown): string {
  const p = join(dir, name)
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content))
  return p
}

/** Loads with an empty environment in a fresh folder unless given. */
async function load(input: LoadConfigInput & { app?: string | false } = {}): Promise<ServerConfig> {
  const f = folder()
  const argv = [...(input.argv ?? [])]
  if (input.app !== false) argv.push('--app', input.app ?? f.app)
  return loadConfig({ argv, env: input.env ?? {}, cwd: input.cwd ?? f.dir })
}

/** Expects PEONY_CONFIG_INVALID and returns its issues. */
async function problems(p: Promise<unknown>): Promise<readonly ConfigIssue[]> {
  let err: unknown
  try {
    await p
  } catch (e) {
    err = e
  }
  expect(isPeonyError(err, 'PEONY_CONFIG_INVALID'), `expected PEONY_CONFIG_INVALID, got ${String(err)}`).toBe(true)
  const issues = (err as ConfigError).issues
  expect(issues.length).toBeGreaterThan(0)
  return issues
}

function only(issues: readonly ConfigIssue[]): ConfigIssue {
  expect(issues.map((i) => i.message)).toHaveLength(1)
  return issues[0]!
}

describe('defaults', () => {
  it('gives every documented default with only the app set', async () => {
    const c = await load()
    expect(c).toMatchObject({
      intakeEndpoints: ['tcp://127.0.0.1:9250'],
      forwarderEndpoint: 'tcp://127.0.0.1:9260',
      allowNonLoopback: false,
      egressAck: false,
      egressBufferMax: 100_000,
      groups: [{ id: 1, count: 2 }],
      router: undefined,
      queueMaxSize: 10_000,
      claimedMaxSize: 1024,
      laneMaxInFlight: 4,
      laneKeepIdle: 8192,
      shards: 256,
      maxFrameBytes: 1024 * 1024,
      workTimeoutMs: 30_000,
      blockedTimeoutMs: undefined,
      stopTimeoutMs: 30_000,
      workerCloseTimeoutMs: 10_000,
      respawnMinDelayMs: 50,
      respawnMaxDelayMs: 10_000,
      workerResourceLimits: undefined,
      storage: 'leveldb',
      fenceCacheSize: 100_000,
      redisUrl: 'redis://127.0.0.1:6379',
      redisPrefix: 'peony:',
      flushIntervalMs: 1000,
      maxUnflushedAgeMs: 5000,
      flushBatchSize: 500,
      sessionLoadTimeoutMs: 5000,
      sessionIdleTimeoutMs: 900_000,
      sessionCloseGraceMs: 60_000,
      sessionMemoryBudgetMb: 256,
      maxSessions: 0,
      logLevel: 'info',
      configFile: undefined,
      warnings: [],
    })
    expect(c.storagePath).toBe(join(root, `case-${n}`, 'data', 'peony')) // against the working directory
    expect(c.sources.storagePath).toBe('default')
    expect(c.serverId).toMatch(/^peony-[A-Za-z0-9._-]*$/)
    expect(c.sources.serverId).toBe('default')
    expect(c.sources.app).toBe('flag')
    expect(c.sources.queueMaxSize).toBe('default')
    expect(workerCount(c)).toBe(2)
  })

  it('requires the app', async () => {
    const f = folder()
    const i = only(await problems(loadConfig({ argv: [], env: {}, cwd: f.dir })))
    expect(i).toMatchObject({ key: 'app', source: 'default' })
  })

  it('reads the defaults of the process when called without input', async () => {
    // apps/peony-server has a peony.config.json that names the example app.
    const c = await loadConfig({ argv: [], env: {}, cwd: join(import.meta.dirname, '..') })
    expect(c.configFile).toBe(join(import.meta.dirname, '..', 'peony.config.json'))
    expect(c.app).toBe(join(import.meta.dirname, '..', 'examples', 'idle-rpg', 'app.ts'))
  })
})

describe('precedence: defaults ← file ← env ← flags', () => {
  it('takes each key from the latest source that sets it', async () => {
    const f = folder()
    const file = write(f.dir, 'peony.config.json', { app: './app.ts', queueMaxSize: 100, claimedMaxSize: 2000, shards: 512, logLevel: 'debug' })
    const env = { PEONY_QUEUE_MAX_SIZE: '200', PEONY_CLAIMED_MAX_SIZE: '3000' }
    const c = await loadConfig({ argv: ['--queue-max-size', '300'], env, cwd: f.dir })
    expect(c.configFile).toBe(file)
    expect([c.queueMaxSize, c.sources.queueMaxSize]).toEqual([300, 'flag'])
    expect([c.claimedMaxSize, c.sources.claimedMaxSize]).toEqual([3000, 'env'])
    expect([c.shards, c.sources.shards]).toEqual([512, 'file'])
    expect([c.logLevel, c.sources.logLevel]).toEqual(['debug', 'file'])
    expect([c.maxFrameBytes, c.sources.maxFrameBytes]).toEqual([1024 * 1024, 'default'])
  })

  it('--config beats PEONY_CONFIG, which beats a peony.config.* in the working directory', async () => {
    const f = folder()
    write(f.dir, 'peony.config.json', { app: './app.ts', queueMaxSize: 1 })
    write(f.dir, 'env.json', { app: './app.ts', queueMaxSize: 2 })
    write(f.dir, 'flag.json', { app: './app.ts', queueMaxSize: 3 })
    const base = { cwd: f.dir }
    expect((await loadConfig({ ...base, argv: [], env: {} })).queueMaxSize).toBe(1)
    expect((await loadConfig({ ...base, argv: [], env: { PEONY_CONFIG: 'env.json' } })).queueMaxSize).toBe(2)
    expect((await loadConfig({ ...base, argv: ['--config', 'flag.json'], env: { PEONY_CONFIG: 'env.json' } })).queueMaxSize).toBe(3)
    expect((await loadConfig({ ...base, argv: ['--config=flag.json'], env: {} })).queueMaxSize).toBe(3)
  })

  it('treats an empty environment variable as unset', async () => {
    const c = await load({ env: { PEONY_QUEUE_MAX_SIZE: '', PEONY_SERVER_ID: '  ' } })
    expect(c.sources.queueMaxSize).toBe('default')
    expect(c.sources.serverId).toBe('default')
  })

  it("--workers N is one group of N, and a later source's workers replaces an earlier source's groups", async () => {
    const f = folder()
    write(f.dir, 'peony.config.json', {
      app: './app.ts',
      groups: [
        { id: 1, count: 1 },
        { id: 2, count: 1 },
      ],
    })
    const fromFile = await loadConfig({ argv: [], env: {}, cwd: f.dir })
    expect(fromFile.groups).toEqual([
      { id: 1, count: 1 },
      { id: 2, count: 1 },
    ])
    expect(fromFile.warnings.some((w) => w.includes('no tasks'))).toBe(true) // two groups, no router
    const c = await loadConfig({ argv: ['--workers', '3'], env: {}, cwd: f.dir })
    expect(c.groups).toEqual([{ id: 1, count: 3 }])
    expect(c.sources.groups).toBe('flag')
    const e = await loadConfig({ argv: [], env: { PEONY_WORKERS: '5' }, cwd: f.dir })
    expect(e.groups).toEqual([{ id: 1, count: 5 }])
  })

  it('reads groups from env as JSON or id:count pairs', async () => {
    expect((await load({ env: { PEONY_GROUPS: '1:2,lobby:1' } })).groups).toEqual([
      { id: 1, count: 2 },
      { id: 'lobby', count: 1 },
    ])
    expect((await load({ env: { PEONY_GROUPS: '[{"id":7,"count":3}]' } })).groups).toEqual([{ id: 7, count: 3 }])
    expect((await load({ argv: ['--groups', '1:1,2:4'] })).groups).toEqual([
      { id: 1, count: 1 },
      { id: 2, count: 4 },
    ])
  })

  it('collects a repeated --intake and splits PEONY_INTAKE_ENDPOINTS on commas', async () => {
    const c = await load({ argv: ['--intake', 'tcp://127.0.0.1:9001', '--intake=tcp://localhost:9002'] })
    expect(c.intakeEndpoints).toEqual(['tcp://127.0.0.1:9001', 'tcp://localhost:9002'])
    const e = await load({ env: { PEONY_INTAKE_ENDPOINTS: 'tcp://127.0.0.1:9001, tcp://[::1]:9002' } })
    expect(e.intakeEndpoints).toEqual(['tcp://127.0.0.1:9001', 'tcp://[::1]:9002'])
    // A non-repeatable flag given twice: the last one wins.
    expect((await load({ argv: ['--shards', '8', '--shards', '16'] })).shards).toBe(16)
  })

  it('parses booleans in env and flags, including --no-', async () => {
    expect((await load({ env: { PEONY_EGRESS_ACK: 'yes' } })).egressAck).toBe(true)
    expect((await load({ argv: ['--egress-ack'] })).egressAck).toBe(true)
    expect((await load({ env: { PEONY_EGRESS_ACK: 'on' }, argv: ['--no-egress-ack'] })).egressAck).toBe(false)
    expect((await load({ argv: ['--egress-ack=false'] })).egressAck).toBe(false)
  })

  it('takes every other key from env and flags too', async () => {
    const c = await load({
      env: {
        PEONY_SERVER_ID: 'peony-a',
        PEONY_FORWARDER_ENDPOINT: 'tcp://fwd.internal:9260',
        PEONY_MAX_FRAME_BYTES: '65_536',
        PEONY_WORKER_RESOURCE_LIMITS: '{"maxOldGenerationSizeMb":256}',
        PEONY_LOG_LEVEL: 'WARN',
      },
      argv: [
        '--work-timeout-ms',
        '0',
        '--blocked-timeout-ms',
        '7000',
        '--stop-timeout-ms',
        '5000',
        '--worker-close-timeout-ms',
        '2000',
        '--lane-max-in-flight',
        '2',
      ],
    })
    expect(c).toMatchObject({
      serverId: 'peony-a',
      forwarderEndpoint: 'tcp://fwd.internal:9260',
      maxFrameBytes: 65_536,
      workerResourceLimits: { maxOldGenerationSizeMb: 256 },
      logLevel: 'warn',
      workTimeoutMs: 0,
      blockedTimeoutMs: 7000,
      stopTimeoutMs: 5000,
      workerCloseTimeoutMs: 2000,
      laneMaxInFlight: 2,
    })
  })
})

describe('config modules', () => {
  it('reads a .mjs default object with a router function', async () => {
    const f = folder()
    write(
      f.dir,
      'peony.config.mjs',
      `export default { app: './app.ts', groups: [{ id: 1, count: 1 }, { id: 'chat', count: 1 }], router: (t) => (t.cmd === 100 ? 'chat' : 1) }\n`,
    )
    const c = await loadConfig({ argv: [], env: {}, cwd: f.dir })
    expect(c.router?.({ cmd: 100 })).toBe('chat')
    expect(c.router?.({ cmd: 10 })).toBe(1)
    expect(c.warnings).toEqual([])
  })

  it('calls a (async) default-exported function with { env, cwd } and accepts a file: URL app', async () => {
    const f = folder()
    const file = write(
      f.dir,
      'conf.ts',
      `export default async ({ env, cwd }: { env: Record<string, string | undefined>; cwd: string }) => ({
        app: new URL('./app.ts', import.meta.url),
        serverId: env.SHARD_NAME ?? 'none',
        logLevel: cwd.length > 0 ? 'error' : 'info',
      })\n`,
    )
    const c = await loadConfig({ argv: ['--config', file], env: { SHARD_NAME: 'peony-7' }, cwd: f.dir })
    expect(c).toMatchObject({ serverId: 'peony-7', logLevel: 'error', app: f.app })
  })

  it('reports a module that fails to load, a function that throws, and a missing default export', async () => {
    const f = folder()
    write(f.dir, 'broken.mjs', 'export default {\n')
    write(f.dir, 'throws.mjs', 'export default () => { throw new Error("boom") }\n')
    write(f.dir, 'none.mjs', 'export const x = 1\n')
    for (const name of ['broken.mjs', 'throws.mjs', 'none.mjs']) {
      const i = only(await problems(loadConfig({ argv: ['--config', name, '--app', f.app], env: {}, cwd: f.dir })))
      expect(i).toMatchObject({ key: 'config', source: 'file' })
    }
  })
})

describe('validation errors', () => {
  it('names the key, the source and the expectation in the message', async () => {
    const i = only(await problems(load({ env: { PEONY_QUEUE_MAX_SIZE: 'lots' } })))
    expect(i).toMatchObject({ key: 'queueMaxSize', source: 'env', origin: 'env PEONY_QUEUE_MAX_SIZE', received: '"lots"' })
    expect(i.expected).toContain('integer')
    expect(i.message).toContain('queueMaxSize')
    expect(i.message).toContain('PEONY_QUEUE_MAX_SIZE')
    expect(i.message).toContain(i.expected)
  })

  it('rejects wrong types in a file (no coercion from strings, no floats for integers)', async () => {
    const f = folder()
    write(f.dir, 'peony.config.json', { app: './app.ts', queueMaxSize: '100', shards: 1.5, egressAck: 'true', serverId: 7, groups: { id: 1 } })
    const issues = await problems(loadConfig({ argv: [], env: {}, cwd: f.dir }))
    expect(issues.map((i) => [i.key, i.source])).toEqual([
      ['queueMaxSize', 'file'],
      ['shards', 'file'],
      ['egressAck', 'file'],
      ['serverId', 'file'],
      ['groups', 'file'],
    ])
    expect(issues[0]!.origin).toContain(join(f.dir, 'peony.config.json'))
  })

  it('rejects out-of-range numbers from every source', async () => {
    expect(only(await problems(load({ argv: ['--shards', '0'] })))).toMatchObject({ key: 'shards', source: 'flag' })
    expect(only(await problems(load({ argv: ['--queue-max-size=-1'] })))).toMatchObject({ key: 'queueMaxSize', source: 'flag' })
    expect(only(await problems(load({ env: { PEONY_MAX_FRAME_BYTES: '100' } })))).toMatchObject({ key: 'maxFrameBytes', source: 'env' })
    expect(only(await problems(load({ env: { PEONY_WORK_TIMEOUT_MS: '1e3' } })))).toMatchObject({ key: 'workTimeoutMs', source: 'env' })
    expect(only(await problems(load({ env: { PEONY_EGRESS_ACK: 'maybe' } })))).toMatchObject({ key: 'egressAck', source: 'env' })
    expect(only(await problems(load({ argv: ['--server-id', 'has space'] })))).toMatchObject({ key: 'serverId', source: 'flag' })
    expect(only(await problems(load({ argv: ['--log-level', 'warning'] })))).toMatchObject({ key: 'logLevel', suggestion: 'warn' })
  })

  it("rejects unknown file keys with a suggestion, also for the original's names", async () => {
    const f = folder()
    write(f.dir, 'peony.config.json', { app: './app.ts', queue_max_size: 5, TASK_CLAIMED_MAX_SIZE: 5, wokers: 2, frobnicate: true })
    const issues = await problems(loadConfig({ argv: [], env: {}, cwd: f.dir }))
    expect(issues.map((i) => [i.key, i.source, i.suggestion])).toEqual([
      ['queue_max_size', 'file', 'queueMaxSize'],
      ['TASK_CLAIMED_MAX_SIZE', 'file', 'claimedMaxSize'],
      ['wokers', 'file', 'workers'],
      ['frobnicate', 'file', undefined],
    ])
    expect(issues[0]!.message).toContain('did you mean "queueMaxSize"')
  })

  it('rejects unknown flags with a suggestion, stray arguments, and flags without a value', async () => {
    const issues = await problems(load({ argv: ['--queue-max-sise', '5', 'serve', '--server-id'] }))
    expect(issues.map((i) => [i.key, i.source, i.suggestion])).toEqual([
      ['--queue-max-sise', 'flag', '--queue-max-size'],
      ['serve', 'flag', undefined],
      ['serverId', 'flag', undefined],
    ])
  })

  it('suggests the flag closest over the whole name: --storage-pth is --storage-path, not --storage', async () => {
    const issues = await problems(load({ argv: ['--storage-pth', 'db', '--log-levle', 'info', '--max-frame-byte', '2048'] }))
    expect(issues.map((i) => [i.key, i.suggestion])).toEqual([
      ['--storage-pth', '--storage-path'],
      ['--log-levle', '--log-level'],
      ['--max-frame-byte', '--max-frame-bytes'],
    ])
  })

  it('rejects a PEONY_* variable close to a known one, and only warns about others', async () => {
    const i = only(await problems(load({ env: { PEONY_QUEUE_MAXSIZE: '5' } })))
    expect(i).toMatchObject({ key: 'PEONY_QUEUE_MAXSIZE', source: 'env', suggestion: 'PEONY_QUEUE_MAX_SIZE' })
    const c = await load({ env: { PEONY_INTEGRATION: '1', OTHER_THING: '1' } })
    expect(c.warnings).toEqual(['ignored environment variable PEONY_INTEGRATION: not a peony-server setting'])
    // PEONY_REDIS_URL, which the tests of @peony/storage read too, is the redisUrl key.
    const r = await load({ env: { PEONY_REDIS_URL: 'redis://cache.internal:6380' } })
    expect([r.redisUrl, r.sources.redisUrl, r.warnings]).toEqual(['redis://cache.internal:6380', 'env', []])
  })

  it('rejects bad endpoint schemes, hosts and ports', async () => {
    for (const e of [
      'udp://127.0.0.1:9250',
      'inproc://intake',
      'http://127.0.0.1:80',
      '127.0.0.1:9250',
      'tcp://127.0.0.1',
      'tcp://127.0.0.1:0',
      'tcp://127.0.0.1:70000',
      'tcp://300.1.1.1:9250',
      'tcp://bad_host:1',
      'ipc://',
    ]) {
      const i = only(await problems(load({ argv: ['--intake', e] })))
      expect(i, e).toMatchObject({ key: 'intakeEndpoints', source: 'flag' })
    }
    // Connect endpoints need a real host and port.
    for (const e of ['tcp://*:9260', 'tcp://127.0.0.1:*', 'ws://127.0.0.1:9260']) {
      const i = only(await problems(load({ env: { PEONY_FORWARDER_ENDPOINT: e } })))
      expect(i, e).toMatchObject({ key: 'forwarderEndpoint', source: 'env' })
    }
    expect(only(await problems(load({ argv: ['--intake', 'tcp://127.0.0.1:9001', '--intake', 'tcp://127.0.0.1:9001'] })))).toMatchObject({
      key: 'intakeEndpoints',
    })
  })

  it('accepts ipc and loopback intake, and binding non-loopback interfaces only when explicitly allowed', async () => {
    expect((await load({ argv: ['--intake', 'tcp://127.0.0.2:*', '--intake', 'tcp://lo:9250', '--intake', 'ipc://@peony'] })).intakeEndpoints).toEqual([
      'tcp://127.0.0.2:*',
      'tcp://lo:9250',
      'ipc://@peony',
    ])
    for (const e of ['tcp://0.0.0.0:9250', 'tcp://*:9250', 'tcp://10.1.2.3:9250', 'tcp://eth0:9250', 'tcp://[::]:9250']) {
      const i = only(await problems(load({ argv: ['--intake', e] })))
      expect(i, e).toMatchObject({ key: 'intakeEndpoints', source: 'flag' })
      expect(i.expected).toContain('allowNonLoopback')
    }
    expect((await load({ argv: ['--intake', 'tcp://0.0.0.0:9250', '--allow-non-loopback'] })).intakeEndpoints).toEqual(['tcp://0.0.0.0:9250'])
    expect((await load({ argv: ['--intake', 'tcp://*:9250'], env: { PEONY_ALLOW_NON_LOOPBACK: '1' } })).allowNonLoopback).toBe(true)
    // The forwarder is connected to, not bound: any host is fine.
    expect((await load({ argv: ['--forwarder', 'tcp://10.0.0.5:9260'] })).forwarderEndpoint).toBe('tcp://10.0.0.5:9260')
  })

  it('rejects bad groups', async () => {
    const cases: [string, string][] = [
      ['[]', 'empty'],
      ['[{"id":1,"count":0}]', 'count 0'],
      ['[{"id":1,"count":2.5}]', 'fractional count'],
      ['[{"id":1,"count":1},{"id":"1","count":1}]', '1 and "1" are the same group'],
      ['[{"id":1,"cout":1}]', 'unknown key'],
      ['[{"id":true,"count":1}]', 'bad id'],
      ['[1]', 'not an object'],
      ['{"id":1', 'bad JSON'],
      ['1-2', 'bad pair'],
      ['1:x', 'bad count'],
      ['1:2000', 'too many workers'],
    ]
    for (const [text, why] of cases) {
      const i = only(await problems(load({ env: { PEONY_GROUPS: text } })))
      expect(i, why).toMatchObject({ key: 'groups', source: 'env' })
    }
    const unknownKey = only(await problems(load({ env: { PEONY_GROUPS: '[{"id":1,"cout":1}]' } })))
    expect(unknownKey.suggestion).toBe('count')
    // groups and workers in one source conflict.
    expect(only(await problems(load({ argv: ['--workers', '2', '--groups', '1:2'] })))).toMatchObject({ key: 'workers', source: 'flag' })
    expect(only(await problems(load({ argv: ['--workers', '0'] })))).toMatchObject({ key: 'workers', source: 'flag' })
  })

  it('rejects a router that is not a function, and a router from env or flags', async () => {
    const f = folder()
    write(f.dir, 'peony.config.json', { app: './app.ts', router: 'route.js' })
    expect(only(await problems(loadConfig({ argv: [], env: {}, cwd: f.dir })))).toMatchObject({ key: 'router', source: 'file' })
    expect(only(await problems(load({ env: { PEONY_ROUTER: './r.js' } })))).toMatchObject({ key: 'router', source: 'env' })
    expect(only(await problems(load({ argv: ['--router', './r.js'] })))).toMatchObject({ key: 'router', source: 'flag' })
  })

  it('rejects bad worker resource limits', async () => {
    const i = only(await problems(load({ env: { PEONY_WORKER_RESOURCE_LIMITS: '{"maxOldGenerationSize":512}' } })))
    expect(i).toMatchObject({ key: 'workerResourceLimits', source: 'env', suggestion: 'maxOldGenerationSizeMb' })
    expect(only(await problems(load({ env: { PEONY_WORKER_RESOURCE_LIMITS: '{"stackSizeMb":-1}' } })))).toMatchObject({ key: 'workerResourceLimits' })
    expect(only(await problems(load({ env: { PEONY_WORKER_RESOURCE_LIMITS: '512' } })))).toMatchObject({ key: 'workerResourceLimits' })
  })

  it("takes fenceCacheSize (the LevelDB storage's bound on cached fence generations) from env and flags", async () => {
    expect((await load({ env: { PEONY_FENCE_CACHE_SIZE: '5000' } })).fenceCacheSize).toBe(5000)
    expect(only(await problems(load({ argv: ['--fence-cache-size', '0'] })))).toMatchObject({ key: 'fenceCacheSize', source: 'flag' })
    expect(toMasterInput(await load({ argv: ['--fence-cache-size', '7'] })).storage).toMatchObject({ driver: 'leveldb', fenceCacheSize: 7 })
  })

  it("takes laneKeepIdle (the master's bound on idle lanes per worker) from env and flags, 0 included", async () => {
    expect((await load({ env: { PEONY_LANE_KEEP_IDLE: '1_000' } })).laneKeepIdle).toBe(1000)
    expect((await load({ argv: ['--lane-keep-idle', '0'], env: { PEONY_LANE_KEEP_IDLE: '1000' } })).laneKeepIdle).toBe(0)
    expect(only(await problems(load({ argv: ['--lane-keep-idle', '-1'] })))).toMatchObject({ key: 'laneKeepIdle', source: 'flag' })
    const input = toMasterInput(await load({ argv: ['--lane-keep-idle', '5'] }))
    expect(input.laneKeepIdle).toBe(5)
  })

  it('checks keys against each other, naming both sources', async () => {
    const lane = only(await problems(load({ argv: ['--lane-max-in-flight', '64'], env: { PEONY_CLAIMED_MAX_SIZE: '32' } })))
    expect(lane).toMatchObject({ key: 'laneMaxInFlight', source: 'flag' })
    expect(lane.expected).toContain('env PEONY_CLAIMED_MAX_SIZE')
    expect(only(await problems(load({ argv: ['--workers', '9', '--shards', '8'] })))).toMatchObject({ key: 'shards', source: 'flag' })
    expect(only(await problems(load({ argv: ['--worker-close-timeout-ms', '20000', '--stop-timeout-ms', '10000'] })))).toMatchObject({
      key: 'workerCloseTimeoutMs',
    })
    expect(only(await problems(load({ argv: ['--respawn-min-delay-ms', '500', '--respawn-max-delay-ms', '100'] })))).toMatchObject({ key: 'respawnMinDelayMs' })
  })

  it('reports every problem at once', async () => {
    const issues = await problems(load({ argv: ['--shards', 'x', '--bogus'], env: { PEONY_QUEUE_MAX_SIZE: '0', PEONY_LOG_LEVEL: 'loud' } }))
    expect(issues.map((i) => i.key).sort()).toEqual(['--bogus', 'logLevel', 'queueMaxSize', 'shards'])
  })

  it('reports unreadable config files', async () => {
    const f = folder()
    write(f.dir, 'bad.json', '{"app": ')
    write(f.dir, 'list.json', '[1, 2]')
    write(f.dir, 'conf.yaml', 'app: x')
    for (const [argv, why] of [
      [['--config', 'missing.json'], 'missing'],
      [['--config', 'bad.json'], 'invalid JSON'],
      [['--config', 'list.json'], 'not an object'],
      [['--config', 'conf.yaml'], 'unsupported extension'],
      [['--config'], 'no path'],
    ] as const) {
      const i = only(await problems(loadConfig({ argv: [...argv, '--app', f.app], env: {}, cwd: f.dir })))
      expect(i, why).toMatchObject({ key: 'config' })
    }
    const g = folder()
    write(g.dir, 'peony.config.json', { app: './app.ts' })
    write(g.dir, 'peony.config.mjs', 'export default {}')
    expect(only(await problems(loadConfig({ argv: [], env: {}, cwd: g.dir })))).toMatchObject({ key: 'config', source: 'file' })
  })

  it('rejects an app that does not exist', async () => {
    const f = folder()
    expect(only(await problems(load({ app: 'nope.ts', cwd: f.dir })))).toMatchObject({ key: 'app', source: 'flag' })
    write(f.dir, 'peony.config.json', { app: './missing/app.ts' })
    expect(only(await problems(loadConfig({ argv: [], env: {}, cwd: f.dir })))).toMatchObject({ key: 'app', source: 'file' })
  })
})

describe('storage and sessions', () => {
  it('takes each storage and session key from a file, env and flags', async () => {
    const f = folder()
    write(f.dir, 'peony.config.json', { app: './app.ts', storage: 'redis', redisPrefix: 'game-a:', flushIntervalMs: 500, sessionMemoryBudgetMb: 64 })
    const c = await loadConfig({
      argv: ['--max-unflushed-age-ms', '2000', '--flush-batch-size', '100', '--session-idle-timeout-ms', '0', '--max-sessions', '50_000'],
      env: { PEONY_REDIS_URL: 'rediss://user:pw@redis.internal:6380/3', PEONY_SESSION_LOAD_TIMEOUT_MS: '0', PEONY_SESSION_CLOSE_GRACE_MS: '1000' },
      cwd: f.dir,
    })
    expect(c).toMatchObject({
      storage: 'redis',
      redisPrefix: 'game-a:',
      redisUrl: 'rediss://user:pw@redis.internal:6380/3',
      flushIntervalMs: 500,
      maxUnflushedAgeMs: 2000,
      flushBatchSize: 100,
      sessionLoadTimeoutMs: 0,
      sessionIdleTimeoutMs: 0,
      sessionCloseGraceMs: 1000,
      sessionMemoryBudgetMb: 64,
      maxSessions: 50_000,
    })
    expect([c.sources.storage, c.sources.redisUrl, c.sources.maxSessions]).toEqual(['file', 'env', 'flag'])
    expect((await load({ env: { PEONY_STORAGE: 'Memory' } })).storage).toBe('memory')
    expect((await load({ argv: ['--storage', 'leveldb', '--redis-prefix='] })).redisPrefix).toBe('')
  })

  it('maps every storage and session key onto the master input', async () => {
    const c = await load({ argv: ['--storage-path', 'db', '--session-memory-budget-mb', '3', '--flush-interval-ms', '250'] })
    const m = toMasterInput(c)
    expect(m.storage).toEqual({ driver: 'leveldb', location: c.storagePath, fenceCacheSize: 100_000 })
    expect(m.sessions).toEqual({
      flushIntervalMs: 250,
      gateIntervalMs: 2,
      maxUnflushedAgeMs: 5000,
      flushBatchSize: 500,
      loadTimeoutMs: 5000,
      idleTimeoutMs: 900_000,
      closeGraceMs: 60_000,
      memoryBudgetBytes: 3 * 1024 * 1024,
      maxSessions: 0,
    })
    expect(toMasterInput({ ...c, storage: 'redis', redisUrl: 'redis://h:1', redisPrefix: 'p:' }).storage).toEqual({
      driver: 'redis',
      url: 'redis://h:1',
      prefix: 'p:',
    })
    expect(toMasterInput({ ...c, storage: 'memory' }).storage).toEqual({ driver: 'memory' })
  })

  it("resolves storagePath against the config file's folder, else the working directory; file: URLs too", async () => {
    const f = folder()
    mkdirSync(join(f.dir, 'conf'))
    write(join(f.dir, 'conf'), 'peony.json', { app: '../app.ts', storagePath: './state/db' })
    const fromFile = await loadConfig({ argv: ['--config', 'conf/peony.json'], env: {}, cwd: f.dir })
    expect([fromFile.storagePath, fromFile.sources.storagePath]).toEqual([join(f.dir, 'conf', 'state', 'db'), 'file'])
    const fromEnv = await loadConfig({ argv: ['--config', 'conf/peony.json'], env: { PEONY_STORAGE_PATH: 'var/db' }, cwd: f.dir })
    expect(fromEnv.storagePath).toBe(join(f.dir, 'var', 'db'))
    expect((await load({ argv: ['--storage-path', pathToFileURL(join(f.dir, 'u')).href] })).storagePath).toBe(join(f.dir, 'u'))
  })

  it('hides a Redis password in messages and in the logged configuration', async () => {
    const i = only(await problems(load({ env: { PEONY_REDIS_URL: 'http://user:hunter2@cache:6379' } })))
    expect(i).toMatchObject({ key: 'redisUrl', source: 'env' })
    expect(i.message).not.toContain('hunter2')
    expect(i.received).toContain('user:***@cache')
    const c = await load({ env: { PEONY_REDIS_URL: 'redis://user:hunter2@cache:6379' } })
    expect(JSON.stringify(describeConfig(c))).not.toContain('hunter2')
  })

  it('rejects bad storage values from every source', async () => {
    expect(only(await problems(load({ argv: ['--storage', 'leveldbb'] })))).toMatchObject({ key: 'storage', source: 'flag', suggestion: 'leveldb' })
    expect(only(await problems(load({ env: { PEONY_STORAGE: 'postgres' } })))).toMatchObject({ key: 'storage', source: 'env', suggestion: undefined })
    for (const url of ['127.0.0.1:6379', 'redis://', 'redis:///0', 'redis://h:6379/x', 'tcp://h:6379']) {
      expect(only(await problems(load({ argv: ['--redis-url', url] }))), url).toMatchObject({ key: 'redisUrl', source: 'flag' })
    }
    const f = folder()
    write(f.dir, 'a-file', 'x')
    write(f.dir, 'peony.config.json', { app: './app.ts', storage: 1, storagePath: '', redisUrl: 6379, redisPrefix: 'a\u0000b' })
    const issues = await problems(loadConfig({ argv: [], env: {}, cwd: f.dir }))
    expect(issues.map((i) => [i.key, i.source])).toEqual([
      ['storage', 'file'],
      ['storagePath', 'file'],
      ['redisUrl', 'file'],
      ['redisPrefix', 'file'],
    ])
    expect(only(await problems(load({ argv: ['--storage-path', join(f.dir, 'a-file')] })))).toMatchObject({ key: 'storagePath', source: 'flag' })
    expect(only(await problems(load({ argv: ['--redis-prefix', 'x'.repeat(257)] })))).toMatchObject({ key: 'redisPrefix', source: 'flag' })
  })

  it('rejects bad session values from every source', async () => {
    expect(only(await problems(load({ argv: ['--flush-interval-ms', '0'] })))).toMatchObject({ key: 'flushIntervalMs', source: 'flag' })
    expect(only(await problems(load({ env: { PEONY_FLUSH_BATCH_SIZE: '0' } })))).toMatchObject({ key: 'flushBatchSize', source: 'env' })
    expect(only(await problems(load({ env: { PEONY_SESSION_LOAD_TIMEOUT_MS: '-1' } })))).toMatchObject({ key: 'sessionLoadTimeoutMs', source: 'env' })
    expect(only(await problems(load({ argv: ['--session-idle-timeout-ms', '15m'] })))).toMatchObject({ key: 'sessionIdleTimeoutMs', source: 'flag' })
    expect(only(await problems(load({ argv: ['--session-close-grace-ms', '1.5'] })))).toMatchObject({ key: 'sessionCloseGraceMs', source: 'flag' })
    expect(only(await problems(load({ env: { PEONY_SESSION_MEMORY_BUDGET_MB: '256MiB' } })))).toMatchObject({ key: 'sessionMemoryBudgetMb', source: 'env' })
    expect(only(await problems(load({ argv: ['--max-sessions', '-5'] })))).toMatchObject({ key: 'maxSessions', source: 'flag' })
    expect(only(await problems(load({ env: { PEONY_MAX_UNFLUSHED_AGE: '5000' } })))).toMatchObject({
      key: 'PEONY_MAX_UNFLUSHED_AGE',
      suggestion: 'PEONY_MAX_UNFLUSHED_AGE_MS',
    })
  })

  it('requires maxUnflushedAgeMs ≥ flushIntervalMs, naming the key that was set', async () => {
    const age = only(await problems(load({ argv: ['--max-unflushed-age-ms', '500'], env: { PEONY_FLUSH_INTERVAL_MS: '1000' } })))
    expect(age).toMatchObject({ key: 'maxUnflushedAgeMs', source: 'flag' })
    expect(age.expected).toContain('env PEONY_FLUSH_INTERVAL_MS')
    // Only the interval set, above the default age: the interval is reported.
    expect(only(await problems(load({ argv: ['--flush-interval-ms', '6000'] })))).toMatchObject({ key: 'flushIntervalMs', source: 'flag' })
    expect((await load({ argv: ['--flush-interval-ms', '6000', '--max-unflushed-age-ms', '6000'] })).maxUnflushedAgeMs).toBe(6000)
    expect((await load({ argv: ['--max-unflushed-age-ms', '1000'] })).maxUnflushedAgeMs).toBe(1000)
  })
})

describe('relative paths', () => {
  it("resolve against the config file's folder for file values", async () => {
    const f = folder()
    const sub = join(f.dir, 'conf')
    mkdirSync(sub)
    writeFileSync(join(sub, 'game.ts'), 'export default {}\n')
    const file = write(sub, 'peony.json', { app: './game.ts', intakeEndpoints: ['ipc://run/intake.sock'] })
    const c = await loadConfig({ argv: ['--config', 'conf/peony.json'], env: {}, cwd: f.dir })
    expect(c.configFile).toBe(file)
    expect(c.app).toBe(join(sub, 'game.ts'))
    expect(c.intakeEndpoints).toEqual([`ipc://${join(sub, 'run/intake.sock')}`])
  })

  it('resolve against the working directory for env and flag values', async () => {
    const f = folder()
    mkdirSync(join(f.dir, 'conf'))
    writeFileSync(join(f.dir, 'conf', 'game.ts'), 'export default {}\n')
    write(join(f.dir, 'conf'), 'peony.json', { app: './game.ts' })
    const fromEnv = await loadConfig({
      argv: [],
      env: { PEONY_CONFIG: 'conf/peony.json', PEONY_APP: 'app.ts', PEONY_INTAKE_ENDPOINTS: 'ipc://x.sock' },
      cwd: f.dir,
    })
    expect([fromEnv.app, fromEnv.sources.app]).toEqual([f.app, 'env'])
    expect(fromEnv.intakeEndpoints).toEqual([`ipc://${join(f.dir, 'x.sock')}`])
    const fromFlag = await loadConfig({ argv: ['--config', 'conf/peony.json', '--app', './conf/../app.ts'], env: {}, cwd: f.dir })
    expect(fromFlag.app).toBe(f.app)
    expect((await load({ app: pathToFileURL(f.app).href })).app).toBe(f.app)
  })

  it('rejects an ipc path too long for a unix socket', async () => {
    const i = only(await problems(load({ argv: ['--intake', `ipc://${'x'.repeat(120)}.sock`] })))
    expect(i).toMatchObject({ key: 'intakeEndpoints', source: 'flag' })
  })
})

describe('help and documentation', () => {
  it('detects --help and -h before --', () => {
    expect(wantsHelp(['--workers', '2', '--help'])).toBe(true)
    expect(wantsHelp(['-h'])).toBe(true)
    expect(wantsHelp(['--', '--help'])).toBe(false)
    expect(wantsHelp(['--workers', '2'])).toBe(false)
  })

  it('lists every key in --help and in the README table', () => {
    const help = helpText()
    const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8')
    const table = readme.slice(readme.indexOf('### Keys'), readme.indexOf('\n\n', readme.indexOf('| key |')))
    const rows = table.split('\n').filter((l) => l.startsWith('| `'))
    for (const k of describeConfigKeys()) {
      if (k.flags[0] !== undefined) expect(help, k.key).toContain(k.flags[0])
      if (k.env !== undefined) expect(help, k.key).toContain(k.env)
      const row = rows.find((r) => r.startsWith(`| \`${k.key}\``))
      expect(row, `README row for ${k.key}`).toBeDefined()
      if (k.env !== undefined) expect(row, k.key).toContain(`\`${k.env}\``)
      for (const flag of k.flags) expect(row, k.key).toContain(`\`${flag}`)
    }
    expect(rows.length).toBe(describeConfigKeys().length)
  })

  it('formats the ready line, with the storage (a Redis password hidden)', () => {
    const base = {
      serverId: 'peony-a',
      forwarderEndpoint: 'tcp://127.0.0.1:9260',
      groups: [
        { id: 1, count: 2 },
        { id: 'chat', count: 1 },
      ],
      app: '/srv/app.ts',
    }
    const storage = { storage: 'leveldb', storagePath: '/var/lib/peony', redisUrl: 'redis://:s3cret@10.0.0.7:6379/2' } as const
    const ready = { intakeEndpoints: ['tcp://127.0.0.1:9250', 'ipc:///run/p.sock'], workers: 3 }
    expect(formatReadyLine({ ...base, ...storage }, ready)).toBe(
      'peony ready: server_id=peony-a intake=tcp://127.0.0.1:9250,ipc:///run/p.sock forwarder=tcp://127.0.0.1:9260 workers=3 (groups 1:2,chat:1) storage=leveldb:/var/lib/peony app=/srv/app.ts',
    )
    expect(formatReadyLine({ ...base, ...storage, storage: 'redis' }, ready)).toContain(' storage=redis:redis://:***@10.0.0.7:6379/2 app=')
    expect(formatReadyLine({ ...base, ...storage, storage: 'memory' }, ready)).toContain(' storage=memory app=')
  })
})
