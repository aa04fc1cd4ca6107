-- Each answer's weighting beyond its member's record: the factor its pooling weight was multiplied
-- by (below 1 for an answer that cites nothing or contradicts a hard fact; NULL before this
-- migration, read as 1) and why; and whether its backend failed (an error, or no usable reply)
-- rather than the member choosing to abstain.
ALTER TABLE council_votes ADD COLUMN weight_factor DOUBLE;
ALTER TABLE council_votes ADD COLUMN weight_reason VARCHAR;
ALTER TABLE council_votes ADD COLUMN failed BOOLEAN DEFAULT FALSE;
