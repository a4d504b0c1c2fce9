/**
 * Value helpers shared by every schema: the `Bad` a check throws, printable values, and the rules
 * several processes need (integers and booleans from text, paths, ZeroMQ endpoints, URLs with a
 * password to hide).
 */
import { statSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Context of a check: the folder relative paths resolve against. */
export interface Ctx {
  /** The config file's folder for file values; the working directory otherwise. */
  baseDir: string
}

/** A validation failure inside a check; the loader turns it into a ConfigIssue naming key and source. */
export class Bad {
  readonly expected: string
  readonly path: string | undefined
  readonly suggestion: string | undefined
  readonly received: unknown
  readonly hasReceived: boolean
  constructor(expected: string, opts: { path?: string; suggestion?: string | undefined; received?: unknown } = {}) {
    this.expected = expected
    this.path = opts.path
    this.suggestion = opts.suggestion
    this.hasReceived = 'received' in opts
    this.received = opts.received
  }
}

/** Largest delay setTimeout honours. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** True for `{…}` object literals (not arrays, class instances or null). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v) as unknown
  return proto === Object.prototype || proto === null
}

/** Shortened printable form of a value. */
export function show(v: unknown): string {
  if (typeof v === 'function') return 'a function'
  if (v === undefined) return 'nothing'
  if (typeof v === 'bigint') return `${v}n`
  let s: string
  try {
    s = JSON.stringify(v) ?? String(v)
  } catch {
    s = Object.prototype.toString.call(v)
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s
}

/** An integer from text; `_` separators allowed (`10_000`). Throws Bad(expected). */
export function intFromText(raw: string, expected: string): number {
  const t = raw.trim()
  if (!/^[+-]?\d+(?:_\d+)*$/.test(t)) throw new Bad(expected)
  return Number(t.replaceAll('_', ''))
}

/** What a boolean key accepts. */
export const BOOLEAN_EXPECTED = 'a boolean (true/false; in env and flags also 1/0, yes/no, on/off)'

/** A boolean from text: true/false, 1/0, yes/no, on/off. Throws Bad. */
export function boolFromText(raw: string): boolean {
  const t = raw.trim().toLowerCase()
  if (['true', '1', 'yes', 'on'].includes(t)) return true
  if (['false', '0', 'no', 'off'].includes(t)) return false
  throw new Bad(BOOLEAN_EXPECTED)
}

/** JSON from text; a parse error becomes Bad(expected; JSON.parse: …). */
export function jsonFromText(raw: string, expected: string): unknown {
  try {
    return JSON.parse(raw) as unknown
  } catch (err) {
    throw new Bad(`${expected}; JSON.parse: ${(err as Error).message}`)
  }
}

// Paths ───────────────────────────────────────────────

/** Resolves a path or file: URL against the context's folder; undefined when it is neither. */
export function toPath(v: unknown, ctx: Ctx): string | undefined {
  if (v instanceof URL) return v.protocol === 'file:' ? fileURLToPath(v) : undefined
  if (typeof v !== 'string' || v.trim() === '') return undefined
  if (v.startsWith('file:')) {
    try {
      return fileURLToPath(v)
    } catch {
      return undefined
    }
  }
  return resolve(ctx.baseDir, v)
}

/** The absolute path of an existing file (path or file: URL). Throws Bad(expected …). */
export function existingFile(v: unknown, ctx: Ctx, expected: string): string {
  const p = toPath(v, ctx)
  if (p === undefined) throw new Bad(expected)
  let isFile = false
  try {
    isFile = statSync(p).isFile()
  } catch {
    // missing: reported below
  }
  if (!isFile) throw new Bad(`${expected} (no file at ${p})`)
  return p
}

/** The absolute path of a directory that may not exist yet but is not a file. Throws Bad. */
export function directoryPath(v: unknown, ctx: Ctx, expected: string): string {
  const p = toPath(v, ctx)
  if (p === undefined) throw new Bad(expected)
  let isFile = false
  try {
    isFile = !statSync(p).isDirectory()
  } catch {
    // missing: created at start
  }
  if (isFile) throw new Bad(`${expected} (${p} exists and is not a directory)`)
  return p
}

// URLs ────────────────────────────────────────────────

/** `redis://user:secret@host` → `redis://user:***@host`, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/, '$1:***@')
}

// Endpoints ───────────────────────────────────────────

/** Whether an endpoint is bound (intake) or connected to (forwarder). */
export type EndpointMode = 'bind' | 'connect'

/** A normalized endpoint and whether it only reaches this machine. */
export interface ParsedEndpoint {
  endpoint: string
  loopback: boolean
}

const HOSTNAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/
const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/
/** sun_path is 108 bytes on Linux, including the terminating NUL. */
export const IPC_PATH_MAX_BYTES = 107

/** What an endpoint of a mode looks like. */
export function endpointExpected(mode: EndpointMode): string {
  return mode === 'bind' ? 'tcp://<ip, interface or *>:<port or *> or ipc://<path>' : 'tcp://<host>:<port> or ipc://<path>'
}

/** Parses and normalizes one ZeroMQ endpoint (relative ipc paths against ctx.baseDir); throws Bad. */
export function parseEndpoint(raw: unknown, mode: EndpointMode, ctx: Ctx): ParsedEndpoint {
  const expected = endpointExpected(mode)
  if (typeof raw !== 'string') throw new Bad(`${expected} (a string)`)
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(raw.trim())
  if (m === null) throw new Bad(expected, { received: raw })
  const scheme = m[1]!.toLowerCase()
  const rest = m[2]!
  if (scheme === 'ipc') {
    if (rest === '') throw new Bad(`${expected}: the ipc path is empty`, { received: raw })
    const path = rest.startsWith('@') ? rest : resolve(ctx.baseDir, rest)
    if (Buffer.byteLength(path) > IPC_PATH_MAX_BYTES) {
      throw new Bad(`an ipc path of at most ${IPC_PATH_MAX_BYTES} bytes (got ${Buffer.byteLength(path)} after resolving to ${path})`, { received: raw })
    }
    return { endpoint: `ipc://${path}`, loopback: true }
  }
  if (scheme === 'inproc') throw new Bad(`${expected}; inproc:// only reaches sockets inside this process`, { received: raw })
  if (scheme !== 'tcp') throw new Bad(`${expected}; the scheme ${scheme}:// is not supported`, { received: raw })
  let host: string
  let port: string
  const v6 = /^\[([0-9A-Fa-f:.]+)\]:([^:]*)$/.exec(rest)
  const v4 = /^([^:[\]/]+):([^:]*)$/.exec(rest)
  if (v6 !== null && v6[1]!.includes(':')) {
    host = v6[1]!
    port = v6[2]!
  } else if (v4 !== null) {
    host = v4[1]!
    port = v4[2]!
  } else {
    throw new Bad(expected, { received: raw })
  }
  if (port === '*') {
    if (mode === 'connect') throw new Bad(`${expected}; a connect endpoint needs a port number`, { received: raw })
  } else if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new Bad(`${expected}; the port is 1–65535${mode === 'bind' ? ' or * (any free port)' : ''}`, { received: raw })
  }
  const ipv4 = IPV4_RE.exec(host)
  if (host === '*') {
    if (mode === 'connect') throw new Bad(`${expected}; * only makes sense when binding`, { received: raw })
  } else if (ipv4 !== null) {
    if (ipv4.slice(1).some((o) => Number(o) > 255)) throw new Bad(`${expected}; ${host} is not an IPv4 address`, { received: raw })
  } else if (!v6 && !HOSTNAME_RE.test(host)) {
    throw new Bad(`${expected}; ${host} is not a host name`, { received: raw })
  }
  const h = host.toLowerCase()
  const loopback = h === 'localhost' || h === 'lo' || h === '::1' || (ipv4 !== null && ipv4[1] === '127')
  const hostPart = v6 !== null ? `[${host}]` : host
  return { endpoint: `tcp://${hostPart}:${port}`, loopback }
}

/** A non-empty list of distinct bind endpoints (a single string is a list of one); throws Bad with the item's path. */
export function parseEndpointList(v: unknown, mode: EndpointMode, ctx: Ctx, expected: string): string[] {
  if (typeof v === 'string') v = [v]
  if (!Array.isArray(v) || v.length === 0) throw new Bad(expected)
  const out: string[] = []
  for (let i = 0; i < v.length; i++) {
    try {
      const { endpoint } = parseEndpoint(v[i], mode, ctx)
      if (out.includes(endpoint)) throw new Bad(`distinct endpoints (${endpoint} is listed twice)`, { path: `[${i}]` })
      out.push(endpoint)
    } catch (err) {
      if (err instanceof Bad && err.path === undefined) {
        throw new Bad(err.expected, { path: `[${i}]`, received: err.hasReceived ? err.received : v[i] })
      }
      throw err
    }
  }
  return out
}
