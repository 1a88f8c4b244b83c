-- Admits one request against all of its counters, or against none of them, atomically.
--
-- KEYS[i]: charge i's counter. ARGV, five per charge:
--   mode   'fit' (Requests, Parallel: admit if used + amount <= limit) or
--          'room' (Tokens, Budget: admit while used < limit, then reserve amount);
--   limit  the limit;
--   amount what the charge adds;
--   base   where the counter starts if it does not exist yet (a budget's spend so far, else 0);
--   ttl    the counter's expiry in ms from now, set on every admission; 0: none.
-- Returns {1, used_1, ..., used_n} (each count after the admission) when admitted, or
-- {0, i, used} when charge i refused with the counter at used (nothing was written).
--
-- Counts are compared as Lua numbers (doubles: exact to 2^53, about 9 million dollars in
-- nano-dollars), but written with SET and INCRBY of the decimal strings Rust sent, so that the
-- stored counts are exact integers.
local n = #KEYS
local used = {}
local exists = {}
for i = 1, n do
  local a = (i - 1) * 5
  local mode, limit, amount = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local current = nil
  -- A counter charged twice in one admission counts on from its first charge.
  for j = i - 1, 1, -1 do
    if KEYS[j] == KEYS[i] then
      current = used[j]
      break
    end
  end
  if current == nil then
    local stored = redis.call('GET', KEYS[i])
    if stored then
      current = tonumber(stored)
    else
      current = tonumber(ARGV[a + 4])
    end
  end
  local admitted
  if mode == 'fit' then
    admitted = current + amount <= limit
  else
    admitted = current < limit
  end
  if not admitted then
    return {0, i, current}
  end
  used[i] = current + amount
end
local result = {1}
for i = 1, n do
  local a = (i - 1) * 5
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('SET', KEYS[i], ARGV[a + 4])
  end
  result[i + 1] = redis.call('INCRBY', KEYS[i], ARGV[a + 3])
  local ttl = tonumber(ARGV[a + 5])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return result
