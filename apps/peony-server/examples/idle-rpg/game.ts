/**
 * Rules of the idle cultivation example, as pure functions over plain state (no I/O, time passed
 * in), so they are easy to test and the route handlers in app.ts stay thin.
 *
 * A cultivator gathers qi while away (idle income, capped at OFFLINE_CAP_MS), collects it, and
 * spends it to break through to the next realm, which raises the income. A meditating cultivator
 * also completes a circuit every CIRCUIT_MS: it banks the pending qi and adds a bonus of
 * CIRCUIT_BONUS_SECONDS of income (app.ts drives it with a durable session timer, so circuits
 * are completed while the player is offline too).
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

/** One meditation circuit (a "small heavenly circuit"), in ms. */
export const CIRCUIT_MS = 60_000

/** A completed circuit adds this many seconds of the realm's income on top of the qi it banks. */
export const CIRCUIT_BONUS_SECONDS = 10

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
  /** Thousandths of a qi gathered by the last collect but not yet a whole qi (0–999). */
  qiCarry: number
  /** When idle income was last collected (ms since the epoch). */
  lastCollectAt: number
  online: boolean
  createdAt: number
  /** Whether the cultivator meditates (completes a circuit every CIRCUIT_MS). */
  meditating: boolean
  /** Circuits completed in all. */
  circuits: number
}

/** A new cultivator, at `now`. */
export function newCultivator(name: string, now: number): Cultivator {
  return { name, realm: 0, qi: 0, qiCarry: 0, lastCollectAt: now, online: true, createdAt: now, meditating: false, circuits: 0 }
}

/** Thousandths of a qi gathered since the last collect (capped at OFFLINE_CAP_MS), plus the carry. */
function gatheredMilli(c: Cultivator, now: number): number {
  const elapsed = Math.min(Math.max(0, Math.floor(now - c.lastCollectAt)), OFFLINE_CAP_MS)
  return c.qiCarry + elapsed * REALMS[c.realm]!.qiPerSecond
}

/** Whole qi gathered since the last collect, not yet collected. */
export function pendingQi(c: Cultivator, now: number): number {
  return Math.floor(gatheredMilli(c, now) / 1000)
}

/**
 * Banks the pending qi; returns how much was gained. The part of a qi gathered but not yet whole
 * is carried (`qiCarry`), so collecting often loses nothing. A `now` before the last collect
 * changes nothing.
 */
export function collect(c: Cultivator, now: number): number {
  if (now <= c.lastCollectAt) return 0
  const milli = gatheredMilli(c, now)
  const gained = Math.floor(milli / 1000)
  c.qi += gained
  c.qiCarry = milli % 1000
  c.lastCollectAt = now
  return gained
}

/** The qi a circuit adds on top of what it banks, at the cultivator's realm. */
export function circuitBonus(c: Cultivator): number {
  return REALMS[c.realm]!.qiPerSecond * CIRCUIT_BONUS_SECONDS
}

/** Completes one meditation circuit that ended at `at`: banks the qi pending then, adds the bonus; returns the qi gained. */
export function completeCircuit(c: Cultivator, at: number): number {
  const bonus = circuitBonus(c)
  const gained = collect(c, at) + bonus
  c.qi += bonus
  c.circuits += 1
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
export function statusOf(
  c: Cultivator,
  now: number,
): {
  name: string
  realm: string
  qi: number
  pendingQi: number
  qiPerSecond: number
  nextBreakthrough: number | null
  meditating: boolean
  circuits: number
} {
  const realm = REALMS[c.realm]!
  return {
    name: c.name,
    realm: realm.name,
    qi: c.qi,
    pendingQi: pendingQi(c, now),
    qiPerSecond: realm.qiPerSecond,
    nextBreakthrough: Number.isFinite(realm.breakthroughCost) ? realm.breakthroughCost : null,
    meditating: c.meditating,
    circuits: c.circuits,
  }
}

/** A valid display name: 1–24 characters after trimming, no control characters. */
export function cleanName(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined
  const t = v.trim()
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (t.length === 0 || t.length > 24 || /[\u0000-\u001f\u007f]/.test(t)) return undefined
  return t
}
