-- Training runs report their progress and can be asked to stop (from the CLI or a dashboard).
ALTER TABLE runs ADD COLUMN step BIGINT DEFAULT 0;
ALTER TABLE runs ADD COLUMN total_steps BIGINT;
ALTER TABLE runs ADD COLUMN stop_requested BOOLEAN DEFAULT FALSE;
