/**
 * Fault hooks for tests of LevelStorage: what a real LevelDB cannot do on demand. For tests only
 * (`@peony/storage/leveldb/testing`); it patches classic-level as this package loads it, so the
 * hook reaches the same module instance the driver uses.
 */
import { ClassicLevel } from 'classic-level'

type GetMany = (...args: unknown[]) => Promise<unknown>

/**
 * Holds the next `getMany` of the LevelDB at `storage.location` (a slow cold read after a
 * restart) until `release()`. Other databases read as usual. The storage compliance suite takes
 * it as its `holdNextRead` hook.
 */
export function holdNextRead(storage: { readonly location: string }): { release(): void } {
  const location = storage.location
  const proto = ClassicLevel.prototype as unknown as { getMany: GetMany }
  const original = proto.getMany
  let open!: () => void
  const gate = new Promise<void>((r) => (open = r))
  proto.getMany = function (this: { location: string }, ...args: unknown[]) {
    if (this.location !== location) return original.apply(this, args)
    proto.getMany = original
    const p = original.apply(this, args)
    return gate.then(() => p)
  }
  return {
    release() {
      if (proto.getMany !== original && Object.hasOwn(proto, 'getMany')) proto.getMany = original
      open()
    },
  }
}
