-- A `fixed` profile pins its coin and pool whether or not the aggregator has priced them: such a
-- decision can be made before any profitability run, so it has no run to point to.
ALTER TABLE decisions ALTER COLUMN data_as_of DROP NOT NULL;
COMMENT ON COLUMN decisions.data_as_of IS
    'computed_at of the profitability run the choice was made on; NULL for a pin made without data';
