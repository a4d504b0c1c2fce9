/**
 * Idle cultivation, the example app that `pnpm --filter peony-server start` serves by default
 * (through apps/peony-server/peony.config.json). Body cmds (protocol §4 body `cmd`):
 *
 *   auth.login           {uid}   → {uid}            binds the uid to the connection (egress 260)
 *   player.enter         {name?} → status           creates the cultivator on first entry
 *   cultivate.status              → status
 *   cultivate.collect             → {gained, qi}
 *   cultivate.breakthrough        → status; pushes cultivate.realmUp
 *
 * Flow: a fresh connection has no uid, so `auth.login` is routed by connection and only tells
 * the gateway who the player is; every later request carries the uid and reaches the worker
 * that owns it (uid-sticky routing), which is where the player's state lives.
 *
 * State is a Map in this worker thread's memory (each worker thread loads this module once and
 * holds only its own players). It is lost on restart: storage comes in a later issue.
 */
import { Blueprint, createApp, type PeonyRequest } from '@peony/worker'
import { breakthrough, cleanName, collect, GameRet, newCultivator, REALMS, statusOf, type Cultivator } from './game.ts'

/** Players held by this worker thread, by uid. Replaced by storage in a later issue. */
const players = new Map<string, Cultivator>()

const keyOf = (uid: unknown): string | undefined =>
  uid === undefined || uid === 0 || uid === '' ? undefined : `${typeof uid === 'string' ? 's' : 'i'}${String(uid)}`

/** The caller's cultivator; answers NOT_LOGGED_IN (or asks to enter) and returns undefined otherwise. */
function playerOf(req: PeonyRequest): Cultivator | undefined {
  const key = keyOf(req.uid)
  if (key === undefined) {
    req.reply({ error: 'log in first (auth.login)' }, GameRet.NOT_LOGGED_IN)
    return undefined
  }
  const c = players.get(key)
  if (c === undefined) req.reply({ error: 'enter the world first (player.enter)' }, GameRet.NOT_LOGGED_IN)
  return c
}

const app = createApp()

// Demo login: trusts the uid the client sends. A real game verifies a token with its account
// service here, then binds the verified uid.
app.route('auth.login', (req) => {
  const uid = (req.data as { uid?: unknown } | undefined)?.uid
  if (typeof uid !== 'number' || !Number.isSafeInteger(uid) || uid <= 0) {
    req.reply({ error: 'uid must be a positive integer' }, GameRet.BAD_INPUT)
    return
  }
  req.loginClient(uid)
  req.reply({ uid })
})

const cultivation = new Blueprint('cultivation')

cultivation.route('player.enter', (req) => {
  const key = keyOf(req.uid)
  if (key === undefined) return req.reply({ error: 'log in first (auth.login)' }, GameRet.NOT_LOGGED_IN)
  const now = req.worker.clock.now()
  let c = players.get(key)
  if (c === undefined) {
    const name = cleanName((req.data as { name?: unknown } | undefined)?.name) ?? `Cultivator ${String(req.uid)}`
    c = newCultivator(name, now)
    players.set(key, c)
    req.worker.logger.info({ uid: String(req.uid), name }, 'new cultivator')
  }
  c.online = true
  req.reply(statusOf(c, now))
})

cultivation.route('cultivate.status', (req) => {
  const c = playerOf(req)
  if (c !== undefined) req.reply(statusOf(c, req.worker.clock.now()))
})

cultivation.route('cultivate.collect', (req) => {
  const c = playerOf(req)
  if (c === undefined) return
  const gained = collect(c, req.worker.clock.now())
  req.reply({ gained, qi: c.qi })
})

cultivation.route('cultivate.breakthrough', (req) => {
  const c = playerOf(req)
  if (c === undefined) return
  const now = req.worker.clock.now()
  const ret = breakthrough(c, now)
  req.reply(statusOf(c, now), ret)
  if (ret === GameRet.OK) req.push('cultivate.realmUp', { realm: REALMS[c.realm]!.name })
})

app.register(cultivation)

// The gateway reports a closed connection (task cmd 20); the player's qi keeps accruing offline.
app.addHook('onClientClosed', (req) => {
  const key = keyOf(req.uid)
  const c = key === undefined ? undefined : players.get(key)
  if (c !== undefined) c.online = false
})

export default app
