-- The council's records beyond 0004: member focus and Brier loss (for Hedge weights), each answer's
-- risks, opportunities, weight and revision reason, and each decision's backend, rounds, President's
-- override and what it cost to reach.
ALTER TABLE council_members ADD COLUMN focus VARCHAR;
ALTER TABLE council_members ADD COLUMN brier_sum DOUBLE DEFAULT 0;
ALTER TABLE council_members ADD COLUMN updated_at TIMESTAMPTZ;

ALTER TABLE council_votes ADD COLUMN risks JSON;
ALTER TABLE council_votes ADD COLUMN opportunities JSON;
ALTER TABLE council_votes ADD COLUMN weight DOUBLE;
ALTER TABLE council_votes ADD COLUMN backend VARCHAR;
ALTER TABLE council_votes ADD COLUMN revision_reason VARCHAR;

ALTER TABLE council_decisions ADD COLUMN backend VARCHAR;
ALTER TABLE council_decisions ADD COLUMN rounds INTEGER;
ALTER TABLE council_decisions ADD COLUMN blocker VARCHAR;
ALTER TABLE council_decisions ADD COLUMN meta JSON;
ALTER TABLE council_decisions ADD COLUMN elapsed_ms DOUBLE;
ALTER TABLE council_decisions ADD COLUMN vetoed_at TIMESTAMPTZ;
ALTER TABLE council_decisions ADD COLUMN override VARCHAR;
ALTER TABLE council_decisions ADD COLUMN override_reason VARCHAR;
ALTER TABLE council_decisions ADD COLUMN outcome_note VARCHAR;
