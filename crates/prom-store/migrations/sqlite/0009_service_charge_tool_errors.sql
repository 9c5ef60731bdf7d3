-- Whether a paid call whose result has `isError: true` is charged (prom_core's
-- ServiceRecord::charge_tool_errors). 0 (the default, and every existing service): such calls are
-- released like failed ones; 1: they are captured like successful ones.
ALTER TABLE services ADD COLUMN charge_tool_errors INTEGER NOT NULL DEFAULT 0 CHECK (charge_tool_errors IN (0, 1));
