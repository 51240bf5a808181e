-- KEYS: a lease. ARGV: its holder. Deletes it only if this holder still has it (a mailbox's
-- lease in mail-ingest, the matcher's reconciler lease).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
