-- Aggregator: every source's own latest value with its time and staleness, each source's fetch
-- status, a stable cross-source key for hardware, and staleness for hardware figures.

-- The latest value each source gave for each quantity; the realtime tables hold the values
-- reconciled from these. A source that fails gets its rows here marked stale.
CREATE TABLE source_observations (
    subject_kind text NOT NULL CHECK (subject_kind IN ('coin', 'pool', 'hardware')),
    subject      text NOT NULL CHECK (subject <> ''),
    quantity     text NOT NULL CHECK (quantity <> ''),
    source       text NOT NULL CHECK (source <> ''),
    value        double precision NOT NULL,
    observed_at  timestamptz NOT NULL,
    fetched_at   timestamptz NOT NULL,
    stale        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (subject_kind, subject, quantity, source)
);
COMMENT ON TABLE source_observations IS
    'latest value per source and quantity; units in the quantity name (_usd, _hs, _s, _w)';
COMMENT ON COLUMN source_observations.subject IS
    'coin: SYMBOL/algorithm; pool: pool name; hardware: slug/algorithm';
COMMENT ON COLUMN source_observations.observed_at IS 'the source''s own timestamp, else fetch time';
CREATE INDEX source_observations_source_idx ON source_observations (source);

CREATE TABLE source_status (
    source               text PRIMARY KEY CHECK (source <> ''),
    kind                 text NOT NULL CHECK (kind IN ('price', 'network', 'pool', 'hardware')),
    last_attempt_at      timestamptz NOT NULL,
    last_success_at      timestamptz,
    last_error           text,
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0)
);

-- Sources spell one device with different case and punctuation ("Antminer L7", "antminer-l7"):
-- the slug, lower case with dashes, is the key they meet on.
ALTER TABLE hardware ADD COLUMN slug text UNIQUE CHECK (slug <> '');

ALTER TABLE hardware_mining ADD COLUMN stale boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN hardware_mining.source IS 'comma-separated sources the reconciled figures came from';

COMMENT ON COLUMN profitability.coins_per_day IS 'of coin_id, before the pool fee';
COMMENT ON COLUMN profitability.usd_per_day IS
    'sum over every coin the pool pays (merged mining), before fee and power cost';
