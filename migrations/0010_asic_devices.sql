-- ASICs watched over the cgminer API (the fleet poller, `qscrypt fleet`): registered in the
-- config file (source 'config', kept in step with it by the poller) or through the API
-- (source 'api'); and each device's last poll, which the API serves.
CREATE TABLE asic_devices (
    name       text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$'),
    host       text NOT NULL CHECK (host <> '' AND length(host) <= 255),
    port       integer NOT NULL DEFAULT 4028 CHECK (port BETWEEN 1 AND 65535),
    model      text NOT NULL DEFAULT '' CHECK (length(model) <= 128),
    worker     text NOT NULL DEFAULT '' CHECK (length(worker) <= 128),
    rate_unit  text NOT NULL DEFAULT 'auto' CHECK (rate_unit IN ('auto', 'H', 'kH', 'MH', 'GH', 'TH')),
    source     text NOT NULL DEFAULT 'api' CHECK (source IN ('config', 'api')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN asic_devices.worker IS
    'worker name the device mines as on the proxy: its shares give the proxy''s measure of it';

CREATE TABLE asic_readings (
    device           text PRIMARY KEY REFERENCES asic_devices (name) ON DELETE CASCADE ON UPDATE CASCADE,
    polled_at        timestamptz NOT NULL,
    ok               boolean NOT NULL,
    error            text,
    failures         integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    read_at          timestamptz,
    reading          jsonb CHECK (reading IS NULL OR jsonb_typeof(reading) = 'object'),
    window_s         double precision CHECK (window_s > 0),
    device_window_hs double precision CHECK (device_window_hs >= 0),
    proxy_hs         double precision CHECK (proxy_hs >= 0),
    window_shares    bigint CHECK (window_shares >= 0),
    disagreement     double precision
);
COMMENT ON COLUMN asic_readings.reading IS 'the last good reading (kept while later polls fail)';
COMMENT ON COLUMN asic_readings.disagreement IS '(device - proxy) / device hashrate over window_s';
