-- Dashboard: shares rolled up into 5-minute buckets as they are written, so charts never scan raw
-- shares; pruning of raw shares that never cuts into the PPLNS window; operator bans.

-- Per worker: one row per (worker, bucket, result, reason). `account` is the worker name up to
-- its first dot (ACCOUNT.RIG), copied so an account's page is one index range.
CREATE TABLE share_buckets (
    bucket        timestamptz NOT NULL,
    worker        text NOT NULL,
    account       text NOT NULL,
    result        text NOT NULL CHECK (result IN ('accepted', 'rejected', 'stale')),
    reason        text NOT NULL DEFAULT '',
    shares        bigint NOT NULL CHECK (shares >= 0),
    difficulty    double precision NOT NULL CHECK (difficulty >= 0),
    last_share_at timestamptz NOT NULL,
    PRIMARY KEY (worker, bucket, result, reason)
);
COMMENT ON TABLE share_buckets IS
    'shares per worker and 5-minute bucket (aligned to the epoch), by result and reason; '
    'filled by the shares_roll_up trigger';
COMMENT ON COLUMN share_buckets.reason IS 'the rejection reason; empty for accepted shares';
COMMENT ON COLUMN share_buckets.difficulty IS 'sum of the shares'' difficulty (work credited)';
-- Covering: an account's page (a week of ten workers is 20,000 rows) is an index-only scan.
CREATE INDEX share_buckets_account_idx ON share_buckets (account, bucket)
    INCLUDE (worker, result, reason, shares, difficulty);

-- Pool-wide per upstream: what the pool page charts (a week of it is a few thousand rows however
-- many workers there are) and what the PPLNS window is measured on.
CREATE TABLE pool_buckets (
    bucket     timestamptz NOT NULL,
    upstream   text NOT NULL DEFAULT '',
    result     text NOT NULL CHECK (result IN ('accepted', 'rejected', 'stale')),
    reason     text NOT NULL DEFAULT '',
    shares     bigint NOT NULL CHECK (shares >= 0),
    difficulty double precision NOT NULL CHECK (difficulty >= 0),
    PRIMARY KEY (bucket, upstream, result, reason)
);
COMMENT ON TABLE pool_buckets IS 'shares per upstream and 5-minute bucket, by result and reason';

-- Statement-level with a transition table: one pass per COPY or INSERT (the share writer's
-- 5,000-row segments), not one per row. Rows are upserted in key order, so writers of several
-- proxy processes lock bucket rows in the same order and never deadlock each other.
CREATE FUNCTION qscrypt_roll_up_shares() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO share_buckets AS b (bucket, worker, account, result, reason, shares, difficulty,
                                    last_share_at)
    SELECT date_bin('5 minutes', ts, TIMESTAMPTZ 'epoch'), worker, split_part(worker, '.', 1),
           result, coalesce(reason, ''), count(*), sum(difficulty), max(ts)
    FROM new_shares
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 2, 1, 4, 5
    ON CONFLICT (worker, bucket, result, reason) DO UPDATE SET
        shares = b.shares + EXCLUDED.shares,
        difficulty = b.difficulty + EXCLUDED.difficulty,
        last_share_at = GREATEST(b.last_share_at, EXCLUDED.last_share_at);
    INSERT INTO pool_buckets AS p (bucket, upstream, result, reason, shares, difficulty)
    SELECT date_bin('5 minutes', ts, TIMESTAMPTZ 'epoch'), coalesce(upstream, ''), result,
           coalesce(reason, ''), count(*), sum(difficulty)
    FROM new_shares
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (bucket, upstream, result, reason) DO UPDATE SET
        shares = p.shares + EXCLUDED.shares,
        difficulty = p.difficulty + EXCLUDED.difficulty;
    RETURN NULL;
END;
$$;

CREATE TRIGGER shares_roll_up
    AFTER INSERT ON shares
    REFERENCING NEW TABLE AS new_shares
    FOR EACH STATEMENT EXECUTE FUNCTION qscrypt_roll_up_shares();

-- Shares written before this migration, rolled up once.
INSERT INTO share_buckets (bucket, worker, account, result, reason, shares, difficulty, last_share_at)
SELECT date_bin('5 minutes', ts, TIMESTAMPTZ 'epoch'), worker, split_part(worker, '.', 1), result,
       coalesce(reason, ''), count(*), sum(difficulty), max(ts)
FROM shares GROUP BY 1, 2, 3, 4, 5;
INSERT INTO pool_buckets (bucket, upstream, result, reason, shares, difficulty)
SELECT date_bin('5 minutes', ts, TIMESTAMPTZ 'epoch'), coalesce(upstream, ''), result,
       coalesce(reason, ''), count(*), sum(difficulty)
FROM shares GROUP BY 1, 2, 3, 4;

-- Where the PPLNS window of `p_work` (factor x D x 65536 of share difficulty) starts: for each
-- upstream, the newest bucket from which its accepted difficulty back to now reaches p_work (or
-- its first bucket when it has done less than that); the earliest of those. NULL: no shares.
CREATE FUNCTION qscrypt_pplns_window_start(p_work double precision)
RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
    WITH per AS (
        SELECT upstream, bucket, sum(difficulty) AS d
        FROM pool_buckets WHERE result = 'accepted'
        GROUP BY 1, 2
    ), cum AS (
        SELECT upstream, bucket,
               sum(d) OVER (PARTITION BY upstream ORDER BY bucket DESC) AS done
        FROM per
    ), starts AS (
        SELECT upstream, coalesce(max(bucket) FILTER (WHERE done >= p_work), min(bucket)) AS start
        FROM cum GROUP BY upstream
    )
    SELECT min(start) FROM starts
$$;

-- Drops the daily partitions of `shares` that end at or before p_before, and deletes older rows
-- of the default partition; returns how many partitions it dropped. The caller picks p_before
-- no later than the PPLNS window's start (qscrypt_pplns_window_start).
CREATE FUNCTION qscrypt_prune_shares(p_before timestamptz)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    v_partition text;
    v_dropped   integer := 0;
BEGIN
    IF p_before IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('qscrypt_ensure_share_partitions'));
    FOR v_partition IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'shares'::regclass AND c.relname ~ '^shares_p[0-9]{8}$'
          AND ((to_date(substr(c.relname, 9), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC') <= p_before
    LOOP
        EXECUTE format('DROP TABLE %I', v_partition);
        v_dropped := v_dropped + 1;
    END LOOP;
    DELETE FROM shares_default WHERE ts < p_before;
    RETURN v_dropped;
END;
$$;

-- Workers online: those with a share in the last minutes, found by range.
CREATE INDEX workers_last_share_at_idx ON workers (last_share_at);

-- Operator bans, set from the admin page; every proxy polls them. A worker ban on a name without
-- a dot covers the whole account (every ACCOUNT.RIG).
CREATE TABLE bans (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('worker', 'ip')),
    value      text NOT NULL CHECK (value <> '' AND length(value) <= 128),
    reason     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    UNIQUE (kind, value)
);
COMMENT ON COLUMN bans.expires_at IS 'NULL: until lifted';

-- An account's workers (ACCOUNT.RIG) by the account.
CREATE INDEX workers_account_idx ON workers ((split_part(name, '.', 1)), name);
