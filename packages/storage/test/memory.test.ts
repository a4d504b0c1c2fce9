import { MemoryStorage } from '@peony/storage'
import { storageSuite } from '@peony/storage/testing'

storageSuite({
  name: 'MemoryStorage',
  factory: ({ prefix }) => new MemoryStorage({ prefix }),
  reopen: (previous, { prefix }) => new MemoryStorage({ prefix, store: (previous as MemoryStorage).store }),
})
