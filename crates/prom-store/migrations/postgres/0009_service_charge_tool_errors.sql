-- Whether a paid call whose result has `isError: true` is charged (prom_core's
-- ServiceRecord::charge_tool_errors). FALSE (the default, and every existing service): such calls
-- are released like failed ones; TRUE: they are captured like successful ones.
ALTER TABLE services ADD COLUMN charge_tool_errors BOOLEAN NOT NULL DEFAULT FALSE;
