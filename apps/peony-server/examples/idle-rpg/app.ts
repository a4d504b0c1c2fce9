/**
 * Idle cultivation, the example app that `pnpm --filter peony-server start` serves by default
 * (through apps/peony-server/peony.config.json). Body cmds (protocol §4 body `cmd`):
 *
 *   auth.login           {uid}   → {uid}            binds the uid to the connection (egress 260)
 *   player.enter         {name?} → status           creates the cultivator on first entry
 *   cultivate.status              → status
 *   cultivate.collect             → {gained, qi}
 *   cultivate.breakthrough        → status; pushes cultivate.realmUp
 *   cultivate.meditate   {on?}   → status           starts (default) or stops meditating
 *
 * Flow: a fresh connection has no uid, so `auth.login` is routed by connection and only tells
 * the gateway who the player is; every later request carries the uid and reaches the worker
 * that owns it (uid-sticky routing), which is where the player's session lives.
 *
 * State: each player's cultivator is a session (`app.session`): loaded from the server's storage
 * on the player's first request, kept in this worker's memory, written back by write-behind, so
 * it survives a restart. A uid that has not entered the world has the state `null`.
 *
 * Offline progress: idle income is computed from the time of the last collect (game.ts). A
 * meditating cultivator also has a durable repeating timer, `circuit`, saved with the session:
 * while the session is in memory it fires every circuit; when the session is loaded again (after
 * the player was away long enough to be evicted, or the server restarted) every overdue circuit
 * fires first, up to the worker's catch-up limit, before the player's request runs.
 *
 * The circuit length is CIRCUIT_MS (60 s); IDLE_RPG_CIRCUIT_MS overrides it (for demos and tests).
 */
import { Blueprint, createApp, type PeonyRequest, type Session } from '@peony/worker'
import { breakthrough, CIRCUIT_MS, cleanName, collect, completeCircuit, GameRet, newCultivator, REALMS, statusOf, type Cultivator } from './game.ts'

/** The length of one meditation circuit, ms. */
const circuitMs = ((): number => {
  const raw = process.env.IDLE_RPG_CIRCUIT_MS
  const n = raw === undefined ? NaN : Number(raw)
  return Number.isSafeInteger(n) && n > 0 ? n : CIRCUIT_MS
})()

/** A player's state: their cultivator, or null before `player.enter`. */
type Player = Cultivator | null

const app = createApp()

const players = app.session<Player>({
  initial: () => null,
  // Only changes are written: status requests (the most frequent ones) cost no write.
  dirty: 'manual',
  timers: {
    // One completed meditation circuit, at the time it was due (also when it fires late, on load).
    circuit(session, firing) {
      const c = session.state
      if (c === null || !c.meditating) {
        session.timers.cancel('circuit')
        return
      }
      completeCircuit(c, firing.due)
      if (firing.skipped > 0) session.worker.logger.info({ uid: String(session.uid), skipped: firing.skipped }, 'circuits past the catch-up limit were skipped')
    },
  },
})

/** The caller's session, or undefined after answering NOT_LOGGED_IN (no uid: no session). */
function sessionOf(req: PeonyRequest): Session<Player> | undefined {
  if (req.session === undefined) {
    req.reply({ error: 'log in first (auth.login)' }, GameRet.NOT_LOGGED_IN)
    return undefined
  }
  return players.of(req)
}

/** The caller's cultivator and session; answers NOT_LOGGED_IN (or asks to enter) and returns undefined otherwise. */
function playerOf(req: PeonyRequest): { s: Session<Player>; c: Cultivator } | undefined {
  const s = sessionOf(req)
  if (s === undefined) return undefined
  const c = s.state
  if (c === null) {
    req.reply({ error: 'enter the world first (player.enter)' }, GameRet.NOT_LOGGED_IN)
    return undefined
  }
  return { s, c }
}

// Demo login: trusts the uid the client sends. A real game verifies a token with its account
// service here, then binds the verified uid. It needs no state, so it never loads a session.
app.route(
  'auth.login',
  (req) => {
    const uid = (req.data as { uid?: unknown } | undefined)?.uid
    if (typeof uid !== 'number' || !Number.isSafeInteger(uid) || uid <= 0) {
      req.reply({ error: 'uid must be a positive integer' }, GameRet.BAD_INPUT)
      return
    }
    req.loginClient(uid)
    req.reply({ uid })
  },
  { session: false },
)

const cultivation = new Blueprint('cultivation')

cultivation.route('player.enter', (req) => {
  const s = sessionOf(req)
  if (s === undefined) return
  const now = req.worker.clock.now()
  let c = s.state
  if (c === null) {
    const name = cleanName((req.data as { name?: unknown } | undefined)?.name) ?? `Cultivator ${String(req.uid)}`
    c = newCultivator(name, now)
    s.state = c // assigning the state marks the session dirty
    req.worker.logger.info({ uid: String(req.uid), name }, 'new cultivator')
  } else if (!c.online) {
    c.online = true
    s.markDirty()
  }
  req.reply(statusOf(c, now))
})

cultivation.route('cultivate.status', (req) => {
  const p = playerOf(req)
  if (p !== undefined) req.reply(statusOf(p.c, req.worker.clock.now()))
})

cultivation.route('cultivate.collect', (req) => {
  const p = playerOf(req)
  if (p === undefined) return
  const gained = collect(p.c, req.worker.clock.now())
  p.s.markDirty()
  req.reply({ gained, qi: p.c.qi })
})

// A breakthrough spends the qi of hours of cultivation: its answer must never be acknowledged
// and then forgotten by a crash. The output gate sends the reply and the push only once the
// change is in storage (a failed write answers -10008 and nothing is applied).
cultivation.route(
  'cultivate.breakthrough',
  (req) => {
    const p = playerOf(req)
    if (p === undefined) return
    const now = req.worker.clock.now()
    const ret = breakthrough(p.c, now)
    p.s.markDirty()
    req.reply(statusOf(p.c, now), ret)
    if (ret === GameRet.OK) req.push('cultivate.realmUp', { realm: REALMS[p.c.realm]!.name })
  },
  { gate: 'stored' },
)

cultivation.route('cultivate.meditate', (req) => {
  const p = playerOf(req)
  if (p === undefined) return
  const on = (req.data as { on?: unknown } | undefined)?.on
  if (on !== undefined && typeof on !== 'boolean') return req.reply({ error: 'on must be a boolean' }, GameRet.BAD_INPUT)
  const meditate = on ?? true
  if (meditate && !p.c.meditating) {
    p.c.meditating = true
    // Durable: saved with the session, so circuits keep counting while the player is away.
    p.s.timers.set('circuit', { in: circuitMs, every: circuitMs })
  } else if (!meditate && p.c.meditating) {
    p.c.meditating = false
    p.s.timers.cancel('circuit')
  }
  p.s.markDirty()
  req.reply(statusOf(p.c, req.worker.clock.now()))
})

app.register(cultivation)

// The gateway reports a closed connection (task cmd 20). The session stays in memory for the
// server's sessionCloseGraceMs, then is written and dropped; qi keeps accruing offline, and a
// meditating cultivator's circuits are caught up when the session is loaded again.
app.addHook('onClientClosed', (req) => {
  if (req.session === undefined) return // not in memory: nothing to update
  const c = players.of(req).state
  if (c?.online) {
    c.online = false
    players.of(req).markDirty()
  }
})

export default app
