-- A charge is written without a settlement and gets one only when it is batched for settling, so
-- only those rows need an entry: the charge book's inserts (one per paid call) then skip this
-- index altogether. `settlement_id = $1` implies `IS NOT NULL`, so lookups still use it.
DROP INDEX charges_settlement;
CREATE INDEX charges_settlement ON charges (settlement_id) WHERE settlement_id IS NOT NULL;
