-- TruckLLM runtime store, schema version 1: counters, window buckets, roll-ups and applied
-- batch ids, plus the functions that change them, so that every store call is one statement
-- (one round trip, one transaction), as every Redis call is one script.
--
-- Series are named by their escaped form `provider:key_id:metric` (see series.rs), provider
-- keys by `provider:key_id`. Times are Unix milliseconds from the callers' clocks; bucket and
-- step columns are indexes (time / bucket width, time / roll-up step). Writers of one
-- provider key take a transaction-level advisory lock on it, in a fixed order, so reservations
-- are decided one at a time per key and concurrent batches never deadlock. Expired rows are
-- filtered by every read and deleted by truckllm_sweep.

CREATE TABLE truckllm_counters (
    series text COLLATE "C" PRIMARY KEY,
    value double precision NOT NULL,
    expires_at_ms bigint NOT NULL
);
CREATE INDEX truckllm_counters_expiry ON truckllm_counters (expires_at_ms);

CREATE TABLE truckllm_buckets (
    series text COLLATE "C" NOT NULL,
    bucket bigint NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (series, bucket)
);
CREATE INDEX truckllm_buckets_age ON truckllm_buckets (bucket);

CREATE TABLE truckllm_rollups (
    series text COLLATE "C" NOT NULL,
    step bigint NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (series, step)
);
CREATE INDEX truckllm_rollups_age ON truckllm_rollups (step);

CREATE TABLE truckllm_batch_ids (
    key text COLLATE "C" NOT NULL,
    batch_id text COLLATE "C" NOT NULL,
    expires_at_ms bigint NOT NULL,
    PRIMARY KEY (key, batch_id)
);
CREATE INDEX truckllm_batch_ids_expiry ON truckllm_batch_ids (expires_at_ms);

-- Locks provider keys for the rest of the transaction, in hash order (so two writers that
-- share keys always lock them in the same order).
CREATE FUNCTION truckllm_lock_keys(p_keys text[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7411, h)
    FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(p_keys) AS k ORDER BY 1) AS sorted;
END
$$;

-- Adds a delta to one series: the counter (reset first if expired; TTL refreshed), the window
-- bucket `p_bucket` if it is still kept, and the roll-up step `p_step` if roll-ups are on and
-- the step is still kept. Returns the counter's new value.
CREATE FUNCTION truckllm_apply(
    p_series text, p_delta double precision, p_now_ms bigint, p_ttl_ms bigint,
    p_bucket bigint, p_oldest bigint, p_step bigint, p_oldest_step bigint, p_rollups boolean
) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    v double precision;
BEGIN
    INSERT INTO truckllm_counters AS c (series, value, expires_at_ms)
    VALUES (p_series, p_delta, p_now_ms + p_ttl_ms)
    ON CONFLICT (series) DO UPDATE SET
        value = CASE WHEN c.expires_at_ms > p_now_ms THEN c.value + EXCLUDED.value
                     ELSE EXCLUDED.value END,
        expires_at_ms = EXCLUDED.expires_at_ms
    RETURNING c.value INTO v;
    IF p_bucket >= p_oldest THEN
        INSERT INTO truckllm_buckets AS b (series, bucket, value)
        VALUES (p_series, p_bucket, p_delta)
        ON CONFLICT (series, bucket) DO UPDATE SET value = b.value + EXCLUDED.value;
    END IF;
    IF p_rollups AND p_delta <> 0 AND p_step >= p_oldest_step THEN
        INSERT INTO truckllm_rollups AS r (series, step, value)
        VALUES (p_series, p_step, p_delta)
        ON CONFLICT (series, step) DO UPDATE SET value = r.value + EXCLUDED.value;
    END IF;
    RETURN v;
END
$$;

-- Overwrites a counter (not an increment: windows and roll-ups do not move).
CREATE FUNCTION truckllm_set(
    p_key text, p_series text, p_value double precision, p_now_ms bigint, p_ttl_ms bigint
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM truckllm_lock_keys(ARRAY[p_key]);
    INSERT INTO truckllm_counters AS c (series, value, expires_at_ms)
    VALUES (p_series, p_value, p_now_ms + p_ttl_ms)
    ON CONFLICT (series) DO UPDATE SET
        value = EXCLUDED.value, expires_at_ms = EXCLUDED.expires_at_ms;
END
$$;

-- Adds deltas to series (p_keys[i] is the provider key of p_series[i]) in order, and returns
-- each counter's new value. With a batch id, keys that applied the id before (and whose mark
-- has not expired) change nothing and report their counters' current values; the others apply
-- and mark the id until p_now_ms + p_id_ttl_ms.
CREATE FUNCTION truckllm_increment(
    p_batch_id text, p_keys text[], p_series text[], p_deltas double precision[],
    p_now_ms bigint, p_ttl_ms bigint, p_bucket bigint, p_oldest bigint, p_step bigint,
    p_oldest_step bigint, p_rollups boolean, p_id_ttl_ms bigint
) RETURNS double precision[] LANGUAGE plpgsql AS $$
DECLARE
    seen text[] := '{}';
    result double precision[] := '{}';
BEGIN
    PERFORM truckllm_lock_keys(p_keys);
    IF p_batch_id IS NOT NULL THEN
        SELECT coalesce(array_agg(m.key), '{}') INTO seen
        FROM truckllm_batch_ids AS m
        WHERE m.key = ANY (p_keys) AND m.batch_id = p_batch_id AND m.expires_at_ms > p_now_ms;
        INSERT INTO truckllm_batch_ids AS m (key, batch_id, expires_at_ms)
        SELECT DISTINCT k, p_batch_id, p_now_ms + p_id_ttl_ms
        FROM unnest(p_keys) AS k
        WHERE NOT (k = ANY (seen))
        ON CONFLICT (key, batch_id) DO UPDATE SET expires_at_ms = EXCLUDED.expires_at_ms;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_series, 1), 0) LOOP
        IF p_keys[i] = ANY (seen) THEN
            result := result || coalesce(
                (SELECT c.value FROM truckllm_counters AS c
                 WHERE c.series = p_series[i] AND c.expires_at_ms > p_now_ms),
                0::double precision);
        ELSE
            result := result || truckllm_apply(
                p_series[i], p_deltas[i], p_now_ms, p_ttl_ms, p_bucket, p_oldest, p_step,
                p_oldest_step, p_rollups);
        END IF;
    END LOOP;
    RETURN result;
END
$$;

-- How long until enough of a series' window leaves it for `p_amount` more to fit under
-- `p_limit` (`p_granted` is what this call already granted, in the current bucket); the whole
-- window if nothing ever fits. As window.rs's retry_after_ms.
CREATE FUNCTION truckllm_retry_after(
    p_series text, p_window_buckets bigint, p_used double precision, p_amount double precision,
    p_limit double precision, p_granted double precision, p_now_bucket bigint,
    p_bucket_ms bigint, p_now_ms bigint
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    freed double precision := 0;
    e record;
BEGIN
    FOR e IN
        SELECT b.bucket AS bucket, b.value AS value FROM truckllm_buckets AS b
        WHERE b.series = p_series AND b.bucket >= p_now_bucket - p_window_buckets
        UNION ALL
        SELECT p_now_bucket, p_granted WHERE p_granted <> 0
        ORDER BY 1
    LOOP
        freed := freed + e.value;
        IF p_used - freed + p_amount <= p_limit + 1e-9 THEN
            RETURN greatest(1, (e.bucket + p_window_buckets + 1) * p_bucket_ms - p_now_ms);
        END IF;
    END LOOP;
    RETURN p_window_buckets * p_bucket_ms;
END
$$;

-- Reserves for many requests, decided in input order as if each were reserved alone: a
-- request is granted only if each of its limits fits the window's usage plus what earlier
-- requests of this call were granted; a denied one adds nothing. Request r is for provider key
-- p_keys[r], carries id p_ids[r] (NULL for none), p_amount_counts[r] amounts and
-- p_check_counts[r] checks, which follow each other in the amount and check arrays. Granted
-- amounts are then written once per series, at the current bucket. One row per request:
-- (true, 0, 0, 0) when granted, else (false, check number, window usage, retry-after ms).
CREATE FUNCTION truckllm_reserve(
    p_keys text[], p_ids text[], p_amount_counts int[], p_amount_metrics text[],
    p_amounts double precision[], p_check_counts int[], p_check_metrics text[],
    p_check_limits double precision[], p_check_buckets bigint[],
    p_now_ms bigint, p_expiry_ms bigint, p_ttl_ms bigint, p_bucket bigint, p_oldest bigint,
    p_bucket_ms bigint, p_step bigint, p_oldest_step bigint, p_rollups boolean,
    p_id_ttl_ms bigint
) RETURNS TABLE (granted boolean, check_number int, used double precision, retry_after_ms bigint)
LANGUAGE plpgsql AS $$
DECLARE
    g_series text[] := '{}';
    g_amounts double precision[] := '{}';
    w_names text[] := '{}';
    w_sums double precision[] := '{}';
    a_at int := 0;
    c_at int := 0;
    denied boolean;
    d_check int;
    d_used double precision;
    d_wait bigint;
    s text;
    name text;
    pos int;
    amount double precision;
    usage double precision;
    already double precision;
BEGIN
    PERFORM truckllm_lock_keys(p_keys);
    FOR r IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
        denied := false;
        FOR c IN 1 .. p_check_counts[r] LOOP
            IF NOT denied THEN
                s := p_keys[r] || ':' || p_check_metrics[c_at + c];
                amount := 0;
                FOR a IN 1 .. p_amount_counts[r] LOOP
                    IF p_amount_metrics[a_at + a] = p_check_metrics[c_at + c] THEN
                        amount := p_amounts[a_at + a];
                    END IF;
                END LOOP;
                name := s || '|' || p_check_buckets[c_at + c];
                pos := array_position(w_names, name);
                IF pos IS NULL THEN
                    w_names := w_names || name;
                    w_sums := w_sums || coalesce(
                        (SELECT sum(b.value) FROM truckllm_buckets AS b
                         WHERE b.series = s
                           AND b.bucket >= p_bucket - p_check_buckets[c_at + c]),
                        0::double precision);
                    pos := array_length(w_names, 1);
                END IF;
                already := coalesce(g_amounts[array_position(g_series, s)], 0);
                usage := w_sums[pos] + already;
                IF usage + amount > p_check_limits[c_at + c] + 1e-9 THEN
                    denied := true;
                    d_check := c;
                    d_used := usage;
                    d_wait := truckllm_retry_after(
                        s, p_check_buckets[c_at + c], usage, amount, p_check_limits[c_at + c],
                        already, p_bucket, p_bucket_ms, p_now_ms);
                END IF;
            END IF;
        END LOOP;
        IF denied THEN
            RETURN QUERY SELECT false, d_check, d_used, d_wait;
        ELSE
            FOR a IN 1 .. p_amount_counts[r] LOOP
                s := p_keys[r] || ':' || p_amount_metrics[a_at + a];
                pos := array_position(g_series, s);
                IF pos IS NULL THEN
                    g_series := g_series || s;
                    g_amounts := g_amounts || p_amounts[a_at + a];
                ELSE
                    g_amounts[pos] := g_amounts[pos] + p_amounts[a_at + a];
                END IF;
            END LOOP;
            IF p_ids[r] IS NOT NULL THEN
                INSERT INTO truckllm_batch_ids AS m (key, batch_id, expires_at_ms)
                VALUES (p_keys[r], p_ids[r], p_expiry_ms + p_id_ttl_ms)
                ON CONFLICT (key, batch_id) DO UPDATE SET expires_at_ms = EXCLUDED.expires_at_ms;
            END IF;
            RETURN QUERY SELECT true, 0, 0::double precision, 0::bigint;
        END IF;
        a_at := a_at + p_amount_counts[r];
        c_at := c_at + p_check_counts[r];
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(g_series, 1), 0) LOOP
        PERFORM truckllm_apply(
            g_series[i], g_amounts[i], p_expiry_ms, p_ttl_ms, p_bucket, p_oldest, p_step,
            p_oldest_step, p_rollups);
    END LOOP;
END
$$;

-- Deletes up to p_limit expired rows of each table (counters and batch ids past their expiry,
-- buckets older than p_oldest, roll-up steps older than p_oldest_step unless that is NULL),
-- skipping rows a writer holds, and returns how many it deleted. One sweeper at a time: a
-- second caller returns 0 at once.
CREATE FUNCTION truckllm_sweep(
    p_now_ms bigint, p_oldest bigint, p_oldest_step bigint, p_limit int
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    total bigint := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7412, 0) THEN
        RETURN 0;
    END IF;
    DELETE FROM truckllm_counters WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM truckllm_counters WHERE expires_at_ms <= p_now_ms
        LIMIT p_limit FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    DELETE FROM truckllm_buckets WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM truckllm_buckets WHERE bucket < p_oldest
        LIMIT p_limit FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    IF p_oldest_step IS NOT NULL THEN
        DELETE FROM truckllm_rollups WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM truckllm_rollups WHERE step < p_oldest_step
            LIMIT p_limit FOR UPDATE SKIP LOCKED));
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
    END IF;
    DELETE FROM truckllm_batch_ids WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM truckllm_batch_ids WHERE expires_at_ms <= p_now_ms
        LIMIT p_limit FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    RETURN total;
END
$$;
