-- The PostgreSQL log sink (crates/truckllm-logging/src/postgres.rs): request and audit records,
-- each table partitioned by day (UTC) so retention drops whole partitions. The columns are what
-- `logs search` and `logs stats` filter and sum; `record` is the whole record as written.
CREATE TABLE truckllm_request_log (
    ts                timestamptz      NOT NULL,
    request_id        text             NOT NULL,
    client            text,
    endpoint          text             NOT NULL,
    model             text             NOT NULL,
    provider          text,
    key               text,
    status            integer          NOT NULL,
    error             text,
    prompt_tokens     bigint           NOT NULL,
    completion_tokens bigint           NOT NULL,
    latency_ms        double precision NOT NULL,
    cost              double precision NOT NULL,
    record            jsonb            NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX truckllm_request_log_ts ON truckllm_request_log (ts);
CREATE INDEX truckllm_request_log_client ON truckllm_request_log (client, ts);
CREATE INDEX truckllm_request_log_key ON truckllm_request_log (provider, key, ts);
CREATE INDEX truckllm_request_log_model ON truckllm_request_log (model, ts);
CREATE INDEX truckllm_request_log_status ON truckllm_request_log (status, ts);

CREATE TABLE truckllm_audit_log (
    ts       timestamptz NOT NULL,
    category text        NOT NULL,
    action   text        NOT NULL,
    actor    text        NOT NULL,
    target   text,
    outcome  text        NOT NULL,
    record   jsonb       NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX truckllm_audit_log_ts ON truckllm_audit_log (ts);

-- Creates `{parent}_{YYYYMMDD}` for `day` if it does not exist. Sinks on many gateways may ask
-- for the same day at once: an advisory lock per (parent, day) makes them take turns.
CREATE FUNCTION truckllm_log_partition(parent text, day date) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(parent || day::text));
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
        parent || '_' || to_char(day, 'YYYYMMDD'), parent,
        day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
END
$$;

-- Drops the partitions of `parent` whose whole day ended before `before`; how many.
CREATE FUNCTION truckllm_log_drop_before(parent text, before timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = parent
    LOOP
        IF to_date(right(part.relname, 8), 'YYYYMMDD') + 1 <= (before AT TIME ZONE 'UTC')::date THEN
            EXECUTE format('DROP TABLE IF EXISTS %I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END
$$;
