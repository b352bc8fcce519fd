-- Share journal segments already in `shares` (proxy.journal): the writer inserts a segment's key
-- in the same transaction as its rows, so replaying a segment after a crash between that commit
-- and the deletion of its file writes nothing twice. Keys are random (uuid4): unique across
-- processes and machines writing to one database.
CREATE TABLE recorded_segments (
    segment     uuid PRIMARY KEY,
    rows        integer NOT NULL CHECK (rows >= 0),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE recorded_segments IS
    'journal segments of share rows already written; pruned after 30 days by the share writer';
CREATE INDEX recorded_segments_recorded_at_idx ON recorded_segments (recorded_at);
