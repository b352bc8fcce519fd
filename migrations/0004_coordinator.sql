-- Kafka coordinator: how far each coordinator has handed out the nonce space of its upstream job.
--
-- A coordinator reserves a stretch of positions here before it issues tasks from it, so after a
-- restart on the same live job (same job, same extranonce1: one nonce space) it resumes past
-- everything it may have issued, and no range is ever handed out twice. The epoch is kept too:
-- workers treat tasks of an older epoch as stale, so a restarted coordinator must never go back.
-- Position = extranonce2 counter * 2^32 + nonce.

CREATE TABLE coordinator_cursors (
    coordinator_id integer NOT NULL CHECK (coordinator_id BETWEEN 0 AND 65535),
    upstream       text NOT NULL CHECK (upstream <> ''),
    job_key        text NOT NULL,
    epoch          bigint NOT NULL CHECK (epoch >= 0),
    reserved       numeric(20, 0) NOT NULL CHECK (reserved >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (coordinator_id, upstream)
);
COMMENT ON COLUMN coordinator_cursors.job_key IS
    'the job id and a digest of the job and extranonce1: names the nonce space the cursor walks';
COMMENT ON COLUMN coordinator_cursors.reserved IS
    'positions below this may have been issued in that space; a restart on it resumes here';
