-- Applies settlements: adds ARGV[i] to counter KEYS[i], if the counter still exists.
--
-- A counter that has expired is over (its minute or period ended, or a Parallel counter
-- nobody refreshed for 10 minutes): a plain INCRBY would recreate it with no expiry, and a
-- release would leave it negative. Counts never go below 0 (a release that outlived an
-- expiry and a new counter), and keep their expiry.
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local count = redis.call('INCRBY', KEYS[i], ARGV[i])
    if count < 0 then
      redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    end
  end
end
return #KEYS
