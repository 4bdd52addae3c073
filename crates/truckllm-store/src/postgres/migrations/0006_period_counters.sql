-- TruckLLM runtime store, schema version 6: period counters for budgets (see period.rs).
--
-- One row per provider key (`provider:key_id`, escaped), metric and counter name: a sum and
-- the Unix ms it expires at (NULL: never). Expired rows are filtered by every read and deleted
-- by the store's sweeper. Writers lock the provider key with truckllm_lock_keys, as every
-- other writer of the key does, so a reservation's sums and writes are atomic.

CREATE TABLE truckllm_periods (
    key text COLLATE "C" NOT NULL,
    metric text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    value double precision NOT NULL,
    expires_at_ms bigint,
    PRIMARY KEY (key, metric, name)
);
CREATE INDEX truckllm_periods_expiry ON truckllm_periods (expires_at_ms)
    WHERE expires_at_ms IS NOT NULL;

-- Adds a delta to one counter and sets its expiry; an expired row restarts from the delta.
-- A counter whose expiry is at or before p_now_ms changes nothing.
CREATE FUNCTION truckllm_period_add(
    p_key text, p_metric text, p_name text, p_delta double precision, p_expires_ms bigint,
    p_now_ms bigint
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_expires_ms IS NOT NULL AND p_expires_ms <= p_now_ms THEN
        RETURN;
    END IF;
    INSERT INTO truckllm_periods AS p (key, metric, name, value, expires_at_ms)
    VALUES (p_key, p_metric, p_name, p_delta, p_expires_ms)
    ON CONFLICT (key, metric, name) DO UPDATE SET
        value = CASE WHEN p.expires_at_ms IS NULL OR p.expires_at_ms > p_now_ms
                     THEN p.value + EXCLUDED.value ELSE EXCLUDED.value END,
        expires_at_ms = EXCLUDED.expires_at_ms;
END
$$;

-- The sum of the live counters of one key and metric named in p_names (a name listed twice
-- counts twice, as on the other backends).
CREATE FUNCTION truckllm_period_sum(
    p_key text, p_metric text, p_names text[], p_now_ms bigint
) RETURNS double precision LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(p.value), 0::double precision)
    FROM unnest(p_names) AS n(name)
    JOIN truckllm_periods AS p
      ON p.key = p_key AND p.metric = p_metric AND p.name = n.name
    WHERE p.expires_at_ms IS NULL OR p.expires_at_ms > p_now_ms
$$;

-- Checks every budget of one key and, only if all fit, adds each amount to its write counter.
-- Check c sums the p_counted_counts[c] names that follow the previous checks' in p_counted.
-- One row: (true, 0, 0) when granted, else (false, check number (1-based), its sum).
CREATE FUNCTION truckllm_reserve_periods(
    p_key text, p_metrics text[], p_limits double precision[], p_amounts double precision[],
    p_counted_counts int[], p_counted text[], p_write_names text[], p_write_expiries bigint[],
    p_now_ms bigint
) RETURNS TABLE (granted boolean, check_number int, used double precision)
LANGUAGE plpgsql AS $$
DECLARE
    at int := 0;
    u double precision;
BEGIN
    PERFORM truckllm_lock_keys(ARRAY[p_key]);
    FOR c IN 1 .. coalesce(array_length(p_metrics, 1), 0) LOOP
        u := truckllm_period_sum(
            p_key, p_metrics[c], p_counted[at + 1 : at + p_counted_counts[c]], p_now_ms);
        IF u + p_amounts[c] > p_limits[c] + 1e-9 THEN
            RETURN QUERY SELECT false, c, u;
            RETURN;
        END IF;
        at := at + p_counted_counts[c];
    END LOOP;
    FOR c IN 1 .. coalesce(array_length(p_metrics, 1), 0) LOOP
        PERFORM truckllm_period_add(
            p_key, p_metrics[c], p_write_names[c], p_amounts[c], p_write_expiries[c], p_now_ms);
    END LOOP;
    RETURN QUERY SELECT true, 0, 0::double precision;
END
$$;

-- Adds deltas to counters of one key, together; with a batch id, only if the key has not
-- applied that id before (then marks it until p_id_expires_ms). Returns whether it applied.
CREATE FUNCTION truckllm_add_periods(
    p_key text, p_batch_id text, p_metrics text[], p_names text[],
    p_deltas double precision[], p_expiries bigint[], p_now_ms bigint, p_id_expires_ms bigint
) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM truckllm_lock_keys(ARRAY[p_key]);
    IF p_batch_id IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM truckllm_batch_ids AS m
                   WHERE m.key = p_key AND m.batch_id = p_batch_id
                     AND m.expires_at_ms > p_now_ms) THEN
            RETURN false;
        END IF;
        INSERT INTO truckllm_batch_ids AS m (key, batch_id, expires_at_ms)
        VALUES (p_key, p_batch_id, p_id_expires_ms)
        ON CONFLICT (key, batch_id) DO UPDATE SET expires_at_ms = EXCLUDED.expires_at_ms;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_metrics, 1), 0) LOOP
        PERFORM truckllm_period_add(
            p_key, p_metrics[i], p_names[i], p_deltas[i], p_expiries[i], p_now_ms);
    END LOOP;
    RETURN true;
END
$$;
