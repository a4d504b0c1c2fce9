/**
 * The Lua script behind RedisStorage.writeFenced. One call applies a group of fenced writes; each
 * write is checked and applied atomically (the whole script runs atomically in Redis).
 *
 * KEYS: for each write, its fence key, then the keys of its ops.
 * ARGV: the number of writes; then for each write its generation and op count, then per op
 *       'p' + value (put) or 'd' (delete).
 * Returns the 0-based indexes (within the call) of the refused writes.
 */
import { createHash } from 'node:crypto'

export const WRITE_FENCED_LUA = `
local n = tonumber(ARGV[1])
local k = 1
local a = 2
local refused = {}
for w = 1, n do
  local gen = ARGV[a]
  local nops = tonumber(ARGV[a + 1])
  a = a + 2
  local current = redis.call('GET', KEYS[k])
  k = k + 1
  if current == gen then
    for o = 1, nops do
      if ARGV[a] == 'p' then
        redis.call('SET', KEYS[k], ARGV[a + 1])
        a = a + 2
      else
        redis.call('DEL', KEYS[k])
        a = a + 1
      end
      k = k + 1
    end
  else
    for o = 1, nops do
      if ARGV[a] == 'p' then a = a + 2 else a = a + 1 end
    end
    k = k + nops
    refused[#refused + 1] = w - 1
  end
end
return refused
`

/** SHA1 of the script, for EVALSHA. */
export const WRITE_FENCED_SHA = createHash('sha1').update(WRITE_FENCED_LUA).digest('hex')
