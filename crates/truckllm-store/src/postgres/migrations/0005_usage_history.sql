-- TruckLLM usage history, schema version 5: the runtime store's per-step roll-ups summed into
-- hourly and daily rows per (provider, key_id, metric), kept for months (storage.history).
--
-- Rows are only ever added to (`value = value + EXCLUDED.value`), so several writers (two
-- fleets, each with its own runtime store, sharing one database) add up. Each fleet writes a
-- roll-up step once: the step is recorded in truckllm_usage_history_steps under the writer's
-- source name in the same transaction as its sums, and a step already recorded is skipped, so a
-- retried or repeated write (a restart, a second gateway of the same fleet) counts nothing twice.
-- Times are Unix milliseconds; bucket starts are whole UTC hours or days.

CREATE TABLE truckllm_usage_hourly (
    bucket_start_ms bigint NOT NULL,
    provider text COLLATE "C" NOT NULL,
    key_id text COLLATE "C" NOT NULL,
    metric text COLLATE "C" NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (bucket_start_ms, provider, key_id, metric)
);

CREATE TABLE truckllm_usage_daily (
    bucket_start_ms bigint NOT NULL,
    provider text COLLATE "C" NOT NULL,
    key_id text COLLATE "C" NOT NULL,
    metric text COLLATE "C" NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (bucket_start_ms, provider, key_id, metric)
);

CREATE TABLE truckllm_usage_history_steps (
    source text COLLATE "C" NOT NULL,
    step_start_ms bigint NOT NULL,
    written_at_ms bigint NOT NULL,
    PRIMARY KEY (source, step_start_ms)
);
CREATE INDEX truckllm_usage_history_steps_age ON truckllm_usage_history_steps (step_start_ms);
