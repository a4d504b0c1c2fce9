/**
 * Plays broker and forwarder around a real server process: sends client requests (task cmd 10)
 * on a ZeroMQ DEALER connected to intake, and reads the replies from a fake forwarder (a real
 * ROUTER that the server's egress connects to). Also a tiny RESP client to delete the Redis keys
 * a test wrote.
 */
import { connect } from 'node:net'
import * as zmq from 'zeromq'
import type { FakeForwarder } from '@peony/fake-forwarder'
import { encodeTaskFrames, msgpackBodyCodec, packValue, type ReplyBody } from '@peony/protocol'

/** A client of one server: request → reply, matched by `sn`. */
export class GameClient {
  readonly #dealer: zmq.Dealer
  readonly #fwd: FakeForwarder
  #sn = 0
  #seen = 0
  readonly #replies = new Map<number, ReplyBody>()

  constructor(intake: string, fwd: FakeForwarder) {
    this.#dealer = new zmq.Dealer({ linger: 0 })
    this.#dealer.connect(intake)
    this.#fwd = fwd
  }

  /** Sends `cmd` for `uid` (on connection nodeId 1, connId = uid) and waits for its reply. */
  async request(uid: number, cmd: string, data?: unknown, timeoutMs = 10_000): Promise<ReplyBody> {
    const sn = ++this.#sn
    const body = packValue({ cmd, sn, data })
    for (const f of encodeTaskFrames([{ cmd: 10, uid, nodeId: 1, connId: uid, body }])) await this.#dealer.send(f)
    const deadline = Date.now() + timeoutMs
    for (;;) {
      this.#scan()
      const r = this.#replies.get(sn)
      if (r !== undefined) {
        this.#replies.delete(sn)
        return r
      }
      if (Date.now() > deadline) throw new Error(`no reply to ${cmd} (sn ${sn}) within ${timeoutMs} ms`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  #scan(): void {
    const all = this.#fwd.messages
    for (; this.#seen < all.length; this.#seen++) {
      const m = all[this.#seen]!
      if (m.cmd !== 220) continue
      let b: ReplyBody
      try {
        b = msgpackBodyCodec.decodeReply(m.body) as ReplyBody
      } catch {
        continue
      }
      if ('ret' in b && b.sn !== undefined) this.#replies.set(Number(b.sn), b)
    }
  }

  close(): void {
    this.#dealer.close()
  }
}

/** Deletes every key of the Redis at `url` that starts with `prefix` (EVAL over a raw RESP connection). */
export function deleteRedisKeys(url: string, prefix: string): Promise<number> {
  const u = new URL(url)
  const script = "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) n = n + 1 end return n"
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`
  const resp = (args: string[]): string => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`
  return new Promise((resolve, reject) => {
    const sock = connect({ host: u.hostname || '127.0.0.1', port: Number(u.port || 6379) })
    let buf = ''
    const timer = setTimeout(() => {
      sock.destroy()
      reject(new Error(`Redis at ${u.host} did not answer`))
    }, 5000)
    sock.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    sock.on('connect', () => {
      if (u.password)
        sock.write(resp(u.username ? ['AUTH', decodeURIComponent(u.username), decodeURIComponent(u.password)] : ['AUTH', decodeURIComponent(u.password)]))
      if (u.pathname.length > 1) sock.write(resp(['SELECT', u.pathname.slice(1)]))
      sock.write(resp(['EVAL', script, '0', pattern]))
    })
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1')
      const err = /^-(.*)\r\n/m.exec(buf)
      const n = /^:(\d+)\r\n/m.exec(buf)
      if (err === null && n === null) return
      clearTimeout(timer)
      sock.destroy()
      if (err !== null) reject(new Error(`Redis: ${err[1]}`))
      else resolve(Number(n![1]))
    })
  })
}
