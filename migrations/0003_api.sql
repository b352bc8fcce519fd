-- Decision API: each profile's current choice, persisted so the minimum dwell survives restarts
-- and the proxy can read what to mine after a NOTIFY on channel qscrypt_decisions (payload: the
-- profile name), sent in the transaction that changes the row.

CREATE TABLE decisions (
    profile         text PRIMARY KEY REFERENCES profiles (name) ON UPDATE CASCADE ON DELETE CASCADE,
    coin            text NOT NULL CHECK (coin <> '' AND coin = upper(coin)),
    pool            text CHECK (pool <> ''),
    stratum_url     text,
    usd_per_day_net double precision,
    gain_pct        double precision,
    reason          text NOT NULL,
    data_as_of      timestamptz NOT NULL,
    decided_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE decisions IS 'the coin and pool each profile mines now, written by the decision API';
COMMENT ON COLUMN decisions.pool IS 'pools.name; NULL: solo mining on the coin''s own daemon';
COMMENT ON COLUMN decisions.stratum_url IS 'the pool''s first Stratum endpoint when the decision was made';
COMMENT ON COLUMN decisions.usd_per_day_net IS 'expected at the profile''s hashrate, after fee and power';
COMMENT ON COLUMN decisions.gain_pct IS 'how much the choice beat the previous one by; NULL for a first choice';
COMMENT ON COLUMN decisions.data_as_of IS 'computed_at of the profitability run the choice was made on';
COMMENT ON COLUMN decisions.decided_at IS 'when the choice was made: the minimum dwell counts from here';

-- The API asks every second whether a new profitability run has landed, for any algorithm.
CREATE INDEX profitability_computed_at_idx ON profitability (computed_at);
