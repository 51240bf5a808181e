-- KEYS: the record. ARGV: merchant, last4. Drops that merchant's card; deletes the record when
-- no card is left ('released'); a dispute ends when one merchant's cards are left.
local rec, m, field = KEYS[1], ARGV[1], 'card:' .. ARGV[2]
local card = redis.call('HGET', rec, field)
if card and string.sub(card, 1, #m + 1) == m .. ':' then redis.call('HDEL', rec, field) end
local owners, count, last = {}, 0, nil
local all = redis.call('HGETALL', rec)
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 5) == 'card:' then
    local owner = string.match(all[i + 1], '^(.-):')
    if not owners[owner] then owners[owner] = true; count = count + 1; last = owner end
  end
end
if count == 0 then
  redis.call('DEL', rec)
  return 'released'
end
if count == 1 and redis.call('HEXISTS', rec, 'disputed') == 1 then
  redis.call('HDEL', rec, 'disputed')
  redis.call('HSET', rec, 'merchant_id', last)
end
return 'kept'
