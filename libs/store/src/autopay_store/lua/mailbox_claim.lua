-- KEYS: the record. ARGV: merchant, gmail, last4, new card id ('' when none was allocated),
-- password token ('' keeps it), aliases JSON ('' keeps them).
local rec, m, field = KEYS[1], ARGV[1], 'card:' .. ARGV[3]
local card = redis.call('HGET', rec, field)
if card and string.sub(card, 1, #m + 1) ~= m .. ':' then return {'card_taken'} end
if redis.call('HEXISTS', rec, 'disputed') == 1 then return {'mailbox_taken'} end
local owner = redis.call('HGET', rec, 'merchant_id')
if owner and owner ~= m then return {'mailbox_taken'} end
if not card then
  if ARGV[4] == '' then return {'need_id'} end
  card = m .. ':' .. ARGV[4]
  redis.call('HSET', rec, field, card)
end
redis.call('HSET', rec, 'merchant_id', m)
if not redis.call('HGET', rec, 'gmail') then redis.call('HSET', rec, 'gmail', ARGV[2]) end
if ARGV[5] ~= '' then redis.call('HSET', rec, 'app_password', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', rec, 'aliases', ARGV[6]) end
return {'ok', card}
