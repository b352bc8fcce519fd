-- Several proxy hosts behind one load balancer write to one database: each row says which host
-- wrote it, and a share and a worker carry the miner's own address (read from the PROXY protocol
-- header where a balancer relays it, not the balancer's). NULL in rows written before this.
ALTER TABLE shares ADD COLUMN ip text, ADD COLUMN host text;
COMMENT ON COLUMN shares.ip IS 'the miner''s address (a PROXY header''s where a load balancer relayed it)';
COMMENT ON COLUMN shares.host IS 'the proxy host that judged the share ([proxy] host_name)';
ALTER TABLE workers ADD COLUMN last_ip text, ADD COLUMN host text;
COMMENT ON COLUMN workers.last_ip IS 'the address of the worker''s latest recorded share';
COMMENT ON COLUMN workers.host IS 'the proxy host of the worker''s latest recorded share';
ALTER TABLE blocks ADD COLUMN host text;
ALTER TABLE switch_events ADD COLUMN host text;
ALTER TABLE upstream_events ADD COLUMN host text;
