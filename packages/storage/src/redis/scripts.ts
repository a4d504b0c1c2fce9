/**
 * The Lua scripts of RedisStorage. Both are sent whole with EVAL (Redis caches them by SHA on its
 * own), never with EVALSHA: there is no NOSCRIPT path, so no retry that could land a write after
 * a later one of the same fence (after a Redis restart, a failover or a SCRIPT FLUSH).
 *
 * Generations and the marker are integers below 2^53 (microseconds since 1970 are about 1.8e15),
 * so Lua's doubles hold them exactly; they are formatted with '%d', never with tostring (which
 * would write 1.8e+15).
 */

/**
 * ACQUIRE: the next generation of a fence. KEYS[1] the fence key; KEYS[2], when given, the
 * marker key of the prefix. A missing fence is created at the server's clock in microseconds
 * (`TIME`), an existing one is incremented: a generation handed out after Redis lost its data is
 * then larger than every generation handed out before (which were created earlier and
 * incremented once per claim). A missing marker is created with the same clock.
 * Returns { generation, marker or nil }.
 */
export const ACQUIRE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local m = false
if KEYS[2] then
  m = redis.call('GET', KEYS[2])
  if not m then
    m = string.format('%d', now)
    redis.call('SET', KEYS[2], m)
  end
end
local g
if redis.call('EXISTS', KEYS[1]) == 1 then
  g = redis.call('INCR', KEYS[1])
else
  g = now
  redis.call('SET', KEYS[1], string.format('%d', now))
end
return {g, m}
`

/**
 * WRITE_FENCED: one call applies a group of fenced writes; each write is checked and applied
 * atomically (the whole script runs atomically in Redis).
 *
 * KEYS: the marker key (when ARGV[3] is not ''), then for each write its fence key, then the keys
 *       of its ops.
 * ARGV: the number of writes; the marker this client saw first ('' for none); the rescue key
 *       prefix ('' when there is no marker: cluster mode); the byte length of the storage prefix;
 *       then for each write its generation and op count, then per op 'p' + value or 'd'.
 *
 * Per write: the generation equals the fence → applied. The fence is missing while the marker is
 * not the one this client saw (Redis lost its data and nobody claimed this fence since) → the
 * fence is recreated at the writer's generation and the write applied: the sole copy survives.
 * Otherwise refused; and when the writer's generation is older than the marker while the fence
 * is not (an owner from before a loss meets one from after it), its puts are kept in a hash
 * `${prefix}lost:${fence}:${generation}` (field: the key without the prefix).
 *
 * One marker GET per call, whatever the number of writes.
 * Returns { refused indexes, 1 if a loss was seen else 0 }.
 */
export const WRITE_FENCED_LUA = `
local n = tonumber(ARGV[1])
local seen = ARGV[2]
local rescue = ARGV[3]
local plen = tonumber(ARGV[4])
local k = 1
local marker = false
if rescue ~= '' then
  marker = redis.call('GET', KEYS[1])
  k = 2
end
local lost = seen ~= '' and marker ~= seen
local mnum = marker and tonumber(marker)
local a = 5
local refused = {}
for w = 1, n do
  local gen = ARGV[a]
  local nops = tonumber(ARGV[a + 1])
  a = a + 2
  local fk = KEYS[k]
  k = k + 1
  local current = redis.call('GET', fk)
  local ok = current == gen
  if not ok and not current and lost then
    redis.call('SET', fk, gen)
    ok = true
  end
  if ok then
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
    local lk = false
    if current and mnum and tonumber(gen) < mnum and mnum <= tonumber(current) then
      lk = rescue .. string.sub(fk, plen + 7) .. ':' .. gen
    end
    for o = 1, nops do
      if ARGV[a] == 'p' then
        if lk then redis.call('HSET', lk, string.sub(KEYS[k], plen + 1), ARGV[a + 1]) end
        a = a + 2
      else
        a = a + 1
      end
      k = k + 1
    end
    refused[#refused + 1] = w - 1
  end
end
return {refused, lost and 1 or 0}
`
