/**
 * Peony as another project gets it (issue 10, item 5). Packs every publishable workspace package
 * (`pnpm pack`: its `prepack` builds dist/, `workspace:*` becomes the real version), checks each
 * tarball with publint and @arethetypeswrong/cli, installs all of them with npm into a fresh
 * folder outside the repository (third-party dependencies from the registry), writes an app
 * there in TypeScript and one in plain JavaScript, and runs the installed `peony-server` bin on
 * each: one request in through a ZeroMQ DEALER, its reply out through a fake forwarder, then
 * SIGTERM → a `stopped` log line and exit 0.
 *
 * Slow (packing rebuilds every package, npm installs from the registry): the shared work is in
 * beforeAll; each test stays under 60 s.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, delimiter, dirname, join, relative } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as zmq from 'zeromq'
import { encodeTaskFrames, msgpackBodyCodec, packValue, type ReplyBody } from '@peony/protocol'
import { startFakeForwarder, type FakeForwarder } from '@peony/fake-forwarder'
import { freePort, waitFor } from '@peony/test-utils'

const ROOT = join(import.meta.dirname, '..', '..', '..')
const BIN = join(ROOT, 'node_modules', '.bin')

interface Packed {
  name: string
  dir: string
  tarball: string
  bytes: number
}

/** Every workspace package that is not private: what a user installs. */
function publishable(): { name: string; dir: string }[] {
  const out: { name: string; dir: string }[] = []
  for (const parent of ['packages', 'apps']) {
    for (const entry of readdirSync(join(ROOT, parent))) {
      const dir = join(ROOT, parent, entry)
      let pj: { name: string; private?: boolean }
      try {
        pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name: string; private?: boolean }
      } catch {
        continue
      }
      if (pj.private !== true) out.push({ name: pj.name, dir })
    }
  }
  return out
}

/** The environment of a shell outside the repository: no npm_/pnpm_ variables of the pnpm run that started the tests, this Node first on PATH. */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || /^(npm_|pnpm_|PNPM_|PEONY_|VITEST|TURBO_)/.test(k) || k === 'NODE_OPTIONS' || k === 'INIT_CWD') continue
    env[k] = v
  }
  env.PATH = [dirname(process.execPath), env.PATH ?? ''].join(delimiter)
  return { ...env, ...extra }
}

function sh(cmd: string, args: string[], opts: { cwd: string; timeoutMs: number; env?: Record<string, string> }): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env ?? cleanEnv(), timeout: opts.timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} (in ${opts.cwd}) failed: ${err.message}\n${stdout}\n${stderr}`))
      else resolve(stdout + stderr)
    })
  })
}

let packDir = ''
let outside = ''
const packed: Packed[] = []

beforeAll(async () => {
  packDir = mkdtempSync(join(tmpdir(), 'peony-pack-'))
  const t0 = Date.now()
  for (const p of publishable()) {
    // Sequential: each prepack runs tsc -b, and the references are shared.
    const out = await sh('pnpm', ['pack', '--pack-destination', packDir], { cwd: p.dir, env: cleanEnv(), timeoutMs: 240_000 })
    const tarball = out
      .trim()
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.endsWith('.tgz'))
      .pop()
    if (tarball === undefined) throw new Error(`pnpm pack in ${p.dir} named no tarball:\n${out}`)
    packed.push({ name: p.name, dir: p.dir, tarball, bytes: statSync(tarball).size })
  }
  const packMs = Date.now() - t0
  console.log(
    `packed ${packed.length} packages in ${(packMs / 1000).toFixed(1)} s:\n` +
      packed.map((p) => `  ${basename(p.tarball).padEnd(34)} ${(p.bytes / 1024).toFixed(1).padStart(7)} KiB`).join('\n'),
  )

  // A folder outside the repository, as another project would be.
  outside = mkdtempSync(join(realpathSync(tmpdir()), 'peony-outside-'))
  if (!relative(realpathSync(ROOT), outside).startsWith('..')) throw new Error(`${outside} is inside the repository`)
  const t1 = Date.now()
  await sh('npm', ['init', '-y'], { cwd: outside, timeoutMs: 60_000 })
  // TypeScript and Node's types too, to type-check the app against the installed declarations.
  await sh('npm', ['install', '--no-audit', '--no-fund', ...packed.map((p) => p.tarball), 'typescript@~5.9', '@types/node@^20'], {
    cwd: outside,
    timeoutMs: 300_000,
  })
  console.log(`npm install of the tarballs outside the repository (${outside}): ${((Date.now() - t1) / 1000).toFixed(1)} s`)
  // The README's instruction for a TypeScript app: an ES module package.
  await sh('npm', ['pkg', 'set', 'type=module'], { cwd: outside, timeoutMs: 60_000 })

  writeFileSync(
    join(outside, 'app.ts'),
    `import { createApp, type PeonyRequest } from '@peony/worker'

interface Echo { text: string }
const app = createApp()
app.route('echo', (req: PeonyRequest) => {
  const data = req.data as Echo
  req.reply({ echo: data.text, from: 'app.ts' })
})
export default app
`,
  )
  writeFileSync(
    join(outside, 'app.mjs'),
    `import { createApp } from '@peony/worker'

const app = createApp()
app.route('echo', (req) => {
  req.reply({ echo: req.data.text, from: 'app.mjs' })
})
export default app
`,
  )
  // The same TypeScript app in a CommonJS package (npm init's default): it cannot load, and the
  // errors say why. A TypeScript config file there fails the same way.
  mkdirSync(join(outside, 'cjs'))
  writeFileSync(join(outside, 'cjs', 'package.json'), JSON.stringify({ name: 'cjs', private: true, type: 'commonjs' }))
  writeFileSync(join(outside, 'cjs', 'app.ts'), readFileSync(join(outside, 'app.ts'), 'utf8'))
  writeFileSync(join(outside, 'cjs', 'peony.config.ts'), `export default { app: './app.ts' }\n`)
  // A TypeScript config file in the working directory, read by the built server's main thread
  // (tsx registered there for it): one worker instead of the default two.
  writeFileSync(
    join(outside, 'peony.config.ts'),
    `import type { ServerConfig } from 'peony-server'\n\nconst workers: number = 1\nexport default { workers, logLevel: 'info' as ServerConfig['logLevel'] }\n`,
  )
}, 600_000)

afterAll(() => {
  if (packDir) rmSync(packDir, { recursive: true, force: true })
  if (outside) rmSync(outside, { recursive: true, force: true })
})

describe('packages that work outside this repository', () => {
  it('packs every package a user needs, with workspace dependencies as real versions', () => {
    const names = packed.map((p) => p.name).sort()
    expect(names).toEqual([
      '@peony/broker-client',
      '@peony/config',
      '@peony/log-limiter',
      '@peony/master',
      '@peony/protocol',
      '@peony/storage',
      '@peony/worker',
      'peony-server',
    ])
    const server = JSON.parse(readFileSync(join(outside, 'node_modules', 'peony-server', 'package.json'), 'utf8')) as {
      bin: Record<string, string>
      dependencies: Record<string, string>
    }
    expect(server.bin).toEqual({ 'peony-server': './bin/peony-server.mjs' })
    for (const p of packed) {
      const pj = JSON.parse(readFileSync(join(outside, 'node_modules', p.name, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>
      for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies']) {
        for (const [dep, range] of Object.entries(pj[field] ?? {})) expect(range, `${p.name} ${field} ${dep}`).not.toMatch(/^workspace:/)
      }
    }
  })

  // Both tools exit non-zero on a problem (publint --strict: on a warning too), which sh() turns
  // into a failure. Two at a time: attw loads TypeScript, and the machine has 2 cores.
  it('publint (strict) accepts every tarball', async () => {
    const out = await mapLimit(packed, 2, (p) => sh(join(BIN, 'publint'), ['run', '--strict', p.tarball], { cwd: ROOT, timeoutMs: 50_000 }))
    out.forEach((o, i) => expect(o, packed[i]!.name).toMatch(/All good!/))
    console.log(`publint --strict: "All good!" for ${packed.map((p) => p.name).join(', ')}`)
  }, 60_000)

  it('arethetypeswrong (esm-only) accepts every tarball', async () => {
    const env = cleanEnv({ NO_COLOR: '1', FORCE_COLOR: '0' })
    const out = await mapLimit(packed, 2, (p) =>
      sh(join(BIN, 'attw'), ['--profile', 'esm-only', '--format', 'table-flipped', p.tarball], { cwd: ROOT, env, timeoutMs: 50_000 }),
    )
    // Every entry point resolves to types and ESM under node16 and bundler (node10 and require are
    // ignored by the esm-only profile; the exit code says there is no other problem).
    out.forEach((o, i) => expect(o, packed[i]!.name).toMatch(/node16 \(from ESM\)/))
    console.log(`attw --profile esm-only: no problem in ${packed.map((p) => p.name).join(', ')}`)
  }, 60_000)

  it('the TypeScript app and config type-check against the installed declarations (tsc, nodenext, strict, no skipLibCheck)', async () => {
    writeFileSync(
      join(outside, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
          strict: true,
          noEmit: true,
          types: ['node'],
          skipLibCheck: false,
        },
        files: ['app.ts', 'peony.config.ts', 'wrong.ts'],
      }),
    )
    // One file with a type error on purpose: its error, and no other, shows the declarations
    // were read and that app.ts and peony.config.ts are right.
    writeFileSync(join(outside, 'wrong.ts'), `import { createApp } from '@peony/worker'\nexport const n: number = createApp()\n`)
    const tsc = join(outside, 'node_modules', 'typescript', 'bin', 'tsc')
    const err = await sh(process.execPath, [tsc, '-p', '.'], { cwd: outside, timeoutMs: 55_000 }).then(
      () => 'tsc reported nothing',
      (e: Error) => e.message,
    )
    const errors = err.split('\n').filter((l) => /error TS\d+/.test(l))
    expect(errors, err).toEqual([expect.stringMatching(/^wrong\.ts\(2,14\): error TS2322: Type 'PeonyApp' is not assignable to type 'number'/)])
  }, 60_000)

  it('the installed peony-server serves a TypeScript app (app.ts) and stops on SIGTERM', async () => {
    await serveOneRequest('./app.ts')
  }, 60_000)

  it('the installed peony-server serves a plain JavaScript app (app.mjs) and stops on SIGTERM', async () => {
    await serveOneRequest('./app.mjs')
  }, 60_000)

  it('a TypeScript app or config file in a CommonJS package fails with an error that says to add "type": "module"', async () => {
    const app = await startServer(['--app', './cjs/app.ts', '--storage', 'memory', '--log-level', 'silent'], 'pack-cjs')
    expect((await app.exit).code).toBe(1)
    expect(app.stderr()).toMatch(/PEONY_WORKER_APP_LOAD_FAILED: .*app\.ts is TypeScript in a package whose package\.json has no "type": "module"/)
    const config = await startServer(['--config', './cjs/peony.config.ts'], 'pack-cjs-config')
    expect((await config.exit).code).toBe(2)
    expect(config.stderr()).toMatch(/PEONY_CONFIG_INVALID[\s\S]*add "type": "module" to that package\.json/)
  }, 60_000)
})

/** `fn` over `items`, at most `limit` at a time, results in order. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length)
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane))
  return out
}

interface Started {
  child: ChildProcess
  intake: string
  stdout: () => string
  stderr: () => string
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

let fwdForStart: FakeForwarder | undefined

/** Starts the installed bin in the outside folder, as `npx peony-server …` would. */
async function startServer(args: string[], serverId: string): Promise<Started> {
  const intake = `tcp://127.0.0.1:${await freePort()}`
  const forwarder = fwdForStart?.endpoint ?? `tcp://127.0.0.1:${await freePort()}`
  const child = spawn(join(outside, 'node_modules', '.bin', 'peony-server'), ['--intake', intake, '--forwarder', forwarder, '--server-id', serverId, ...args], {
    cwd: outside,
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d))
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  return { child, intake, stdout: () => out, stderr: () => err, exit }
}

async function serveOneRequest(app: string): Promise<void> {
  const fwd = await startFakeForwarder()
  fwdForStart = fwd
  const dealer = new zmq.Dealer({ linger: 0 })
  let s: Started | undefined
  try {
    const t0 = Date.now()
    s = await startServer(['--app', app, '--storage-path', join(outside, `data-${basename(app)}`)], `pack-${basename(app).replace('.', '-')}`)
    const started = s
    await waitFor(() => /^peony ready: /m.test(started.stdout()) || started.child.exitCode !== null, { timeoutMs: 40_000 })
    expect(started.stdout(), started.stderr()).toMatch(/^peony ready: /m)
    // workers=1 comes from peony.config.ts (the default is 2), storage from the installed classic-level.
    expect(started.stdout()).toMatch(/^peony ready: server_id=pack-\S+ .* workers=1 .*storage=leveldb:/m)
    const readyMs = Date.now() - t0
    // The bin is the server process itself (no wrapper between the signal and the server).
    // (pino writes asynchronously: its "master open" line may follow the ready line.)
    await waitFor(() => started.stdout().includes('"msg":"master open"'), { timeoutMs: 5_000 })
    const open = started
      .stdout()
      .split('\n')
      .find((l) => l.includes('"msg":"master open"'))!
    expect((JSON.parse(open) as { pid: number }).pid).toBe(started.child.pid)

    dealer.connect(started.intake)
    const body = packValue({ cmd: 'echo', sn: 1, data: { text: 'hello from outside' } })
    for (const f of encodeTaskFrames([{ cmd: 10, uid: 7, nodeId: 1, connId: 7, body }])) await dealer.send(f)
    let reply: ReplyBody | undefined
    await waitFor(
      () => {
        for (const m of fwd.messages) if (m.cmd === 220) reply = msgpackBodyCodec.decodeReply(m.body) as ReplyBody
        return reply !== undefined
      },
      { timeoutMs: 15_000 },
    )
    expect(reply).toMatchObject({ ret: 0, sn: 1, data: { echo: 'hello from outside', from: basename(app) } })
    console.log(`${app}: ready in ${readyMs} ms; reply ${JSON.stringify(reply)}`)

    started.child.kill('SIGTERM')
    const exit = await started.exit
    expect(exit, started.stderr()).toEqual({ code: 0, signal: null })
    expect(started.stdout()).toMatch(/"msg":"stopped"/)
  } finally {
    fwdForStart = undefined
    dealer.close()
    if (s && s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL')
    await fwd.close()
  }
}
