-- Mark a ledger record handled. KEYS[1]: the record. ARGV[1]: when (ISO), ARGV[2]: key id.
-- Returns 'ok', 'unknown', or 'matched' (a paid credit has nothing to dismiss).
local function present(v) return v ~= nil and v ~= cjson.null end
local raw = redis.call('GET', KEYS[1])
if not raw then return 'unknown' end
local rec = cjson.decode(raw)
if rec.status == 'matched' then return 'matched' end
if not present(rec.dismissed_at) then
  rec.dismissed_at = ARGV[1]
  rec.dismissed_by = ARGV[2]
  redis.call('SET', KEYS[1], cjson.encode(rec), 'KEEPTTL')
end
return 'ok'
