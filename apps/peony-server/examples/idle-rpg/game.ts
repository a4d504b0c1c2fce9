/**
 * Rules of the idle cultivation example, as pure functions over plain state (no I/O, time passed
 * in), so they are easy to test and the route handlers in app.ts stay thin.
 *
 * A cultivator gathers qi while away (idle income, capped at OFFLINE_CAP_MS), collects it, and
 * spends it to break through to the next realm, which raises the income.
 */

/** The realms, in order: name, qi gathered per second, qi needed to break through to the next. */
export const REALMS = [
  { name: 'Mortal', qiPerSecond: 1, breakthroughCost: 100 },
  { name: 'Qi Condensation', qiPerSecond: 3, breakthroughCost: 600 },
  { name: 'Foundation Establishment', qiPerSecond: 8, breakthroughCost: 3_000 },
  { name: 'Core Formation', qiPerSecond: 20, breakthroughCost: 15_000 },
  { name: 'Nascent Soul', qiPerSecond: 50, breakthroughCost: Infinity },
] as const

/** Idle income stops accruing after this long without a collect (8 hours). */
export const OFFLINE_CAP_MS = 8 * 60 * 60 * 1000

/** Application result codes (positive: Peony's own codes are ≤ -10000). */
export const GameRet = {
  OK: 0,
  NOT_LOGGED_IN: 1,
  BAD_INPUT: 2,
  NOT_ENOUGH_QI: 3,
  MAX_REALM: 4,
} as const
export type GameRet = (typeof GameRet)[keyof typeof GameRet]

/** One player's state. */
export interface Cultivator {
  name: string
  realm: number
  /** Qi collected and not spent. */
  qi: number
  /** When idle income was last collected (ms since the epoch). */
  lastCollectAt: number
  online: boolean
  createdAt: number
}

/** A new cultivator, at `now`. */
export function newCultivator(name: string, now: number): Cultivator {
  return { name, realm: 0, qi: 0, lastCollectAt: now, online: true, createdAt: now }
}

/** Qi gathered since the last collect, not yet collected. */
export function pendingQi(c: Cultivator, now: number): number {
  const elapsed = Math.min(Math.max(0, now - c.lastCollectAt), OFFLINE_CAP_MS)
  return Math.floor((elapsed / 1000) * REALMS[c.realm]!.qiPerSecond)
}

/** Banks the pending qi; returns how much was gained. */
export function collect(c: Cultivator, now: number): number {
  const gained = pendingQi(c, now)
  c.qi += gained
  c.lastCollectAt = now
  return gained
}

/** Collects, then tries to break through; returns the result code. */
export function breakthrough(c: Cultivator, now: number): GameRet {
  collect(c, now)
  const realm = REALMS[c.realm]!
  if (c.realm === REALMS.length - 1) return GameRet.MAX_REALM
  if (c.qi < realm.breakthroughCost) return GameRet.NOT_ENOUGH_QI
  c.qi -= realm.breakthroughCost
  c.realm += 1
  return GameRet.OK
}

/** What the client sees. */
export function statusOf(c: Cultivator, now: number): {
  name: string
  realm: string
  qi: number
  pendingQi: number
  qiPerSecond: number
  nextBreakthrough: number | null
} {
  const realm = REALMS[c.realm]!
  return {
    name: c.name,
    realm: realm.name,
    qi: c.qi,
    pendingQi: pendingQi(c, now),
    qiPerSecond: realm.qiPerSecond,
    nextBreakthrough: Number.isFinite(realm.breakthroughCost) ? realm.breakthroughCost : null,
  }
}

/** A valid display name: 1–24 characters after trimming, no control characters. */
export function cleanName(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined
  const t = v.trim()
  if (t.length === 0 || t.length > 24 || /[\u0000-\u001f\u007f]/.test(t)) return undefined
  return t
}
