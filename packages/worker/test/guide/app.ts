// game/app.ts
import { Blueprint, createApp } from '@peony/worker'

interface Player {
  gold: number
  items: string[]
}

const app = createApp()

/**
 * Every player's state is a session: loaded from storage on their first request, kept in this
 * worker's memory, written back by write-behind (docs/sessions.md). No save code.
 */
export const player = app.session<Player>({
  initial: () => ({ gold: 100, items: [] }), // a player storage has nothing for
  timers: {
    // A durable timer: saved with the state; fires on load when it fell due while offline.
    income(s) {
      s.state.gold += 1
    },
  },
})

// Routed by connection: the client has no uid yet, so no session is loaded.
app.route(
  'login',
  (req) => {
    const { uid } = req.data as { uid: number }
    // A real game verifies a token with its account service here.
    req.loginClient(uid) // egress 260: later tasks of this connection carry the uid
    req.reply({ uid })
  },
  { session: false },
)

const shop = new Blueprint('shop')
  .addHook('preRequest', (req) => {
    // Runs before every shop.* handler only.
    if (req.uid === undefined) {
      req.reply({ error: 'log in first' }, 1)
      req.interrupt()
    }
  })
  .route('shop.buy', async (req) => {
    const p = player.of(req) // the session, typed
    const { item, price } = req.data as { item: string; price: number }
    if (p.state.gold < price) return req.reply({ gold: p.state.gold }, 2)
    await req.worker.sleep(5) // any await: other players run meanwhile, this player's next task waits
    p.state.gold -= price
    p.state.items.push(item)
    if (p.timers.get('income') === undefined) p.timers.set('income', { in: 60_000, every: 60_000 })
    req.reply({ gold: p.state.gold })
    req.push('inventory.added', { item })
  }) // the session is marked dirty when the handler settles (dirty: 'auto')
  .route(
    'shop.slow',
    async (req) => {
      await req.worker.sleep(60_000)
      req.reply({ late: true }) // ignored after the -10001 of the timeout: answered once
    },
    { workTimeoutMs: 1_000 },
  )

app.register(shop)

app.addHook('onClientClosed', (req) => {
  // Task cmd 20: the gateway closed the connection. The session is evicted after a grace period.
  req.worker.logger.debug({ uid: String(req.uid) }, 'client closed')
})
app.addHook('onError', (err, req) => {
  // Every PEONY_* error around user code: HANDLER_FAILED, HANDLER_TIMEOUT, HOOK_FAILED,
  // TIMER_FAILED, SESSION_LOAD_FAILED (the client got -10005), SESSION_FLUSH_FAILED, …
  req?.worker.logger.warn({ code: err.code, req: req.toJSON() }, 'request failed')
})

export default app
