-- Pipelines as the runner and the scheduler use them (0003 made the tables).
-- pipeline_runs: the schedule that started a run, and the host and process that execute it, so the
-- scheduler tells a run in progress from one whose process died.
ALTER TABLE pipeline_runs ADD COLUMN schedule_id VARCHAR;
ALTER TABLE pipeline_runs ADD COLUMN host VARCHAR;
ALTER TABLE pipeline_runs ADD COLUMN pid INTEGER;
-- pipeline_steps: the step's place in the run's order (an UPDATE moves DuckDB's rowid).
ALTER TABLE pipeline_steps ADD COLUMN position INTEGER;
-- schedules: the run launched last, what the scheduler did the last time one was due, and how many
-- due times it skipped (a run of the pipeline was still going, or the policy said skip).
ALTER TABLE schedules ADD COLUMN last_run_id VARCHAR;
ALTER TABLE schedules ADD COLUMN last_outcome VARCHAR;
ALTER TABLE schedules ADD COLUMN skipped_runs INTEGER DEFAULT 0;
