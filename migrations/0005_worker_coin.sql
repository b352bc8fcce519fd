-- What switching earned: per worker, coin and UTC day, the time spent mining the coin, the share
-- difficulty accepted on it, and what that work was expected to earn at the aggregator's
-- difficulty, reward and price of the moment it was done.
CREATE TABLE worker_coin_daily (
    day                 date NOT NULL,
    worker              text NOT NULL,
    coin                text NOT NULL CHECK (coin <> '' AND coin = upper(coin)),
    seconds             double precision NOT NULL DEFAULT 0 CHECK (seconds >= 0),
    accepted_difficulty double precision NOT NULL DEFAULT 0 CHECK (accepted_difficulty >= 0),
    expected_coins      double precision NOT NULL DEFAULT 0 CHECK (expected_coins >= 0),
    expected_usd        double precision NOT NULL DEFAULT 0 CHECK (expected_usd >= 0),
    unpriced_difficulty double precision NOT NULL DEFAULT 0 CHECK (unpriced_difficulty >= 0),
    PRIMARY KEY (day, worker, coin)
);
COMMENT ON COLUMN worker_coin_daily.unpriced_difficulty IS
    'accepted difficulty done while the coins table had no difficulty, reward or price for the coin';
CREATE INDEX worker_coin_daily_worker_idx ON worker_coin_daily (worker, day);
