-- KEYS: the record. ARGV: gmail, owner ('' when disputed), disputed merchants ('' when not),
-- password token ('' when none), then last4, `<merchant>:<card id>` pairs. Fills the record in
-- (never overwriting a field) when it is absent or the same owner's; a disputed record only
-- when absent. Returns 1 when it wrote, 0 when the record belongs to someone else.
local rec = KEYS[1]
local owner = redis.call('HGET', rec, 'merchant_id')
local disputed = redis.call('HEXISTS', rec, 'disputed') == 1
if ARGV[3] ~= '' then
  if owner or disputed then return 0 end
  redis.call('HSET', rec, 'disputed', ARGV[3])
elseif disputed or (owner and owner ~= ARGV[2]) then
  return 0
else
  redis.call('HSET', rec, 'merchant_id', ARGV[2])
end
redis.call('HSETNX', rec, 'gmail', ARGV[1])
if ARGV[4] ~= '' then redis.call('HSETNX', rec, 'app_password', ARGV[4]) end
for i = 5, #ARGV, 2 do redis.call('HSETNX', rec, 'card:' .. ARGV[i], ARGV[i + 1]) end
return 1
