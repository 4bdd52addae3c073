-- The config store (crates/truckllm-config/src/store/postgres.rs): every saved version of the
-- YAML config, with who saved it and why, and which version is current. A save inserts a
-- version and moves the pointer in one transaction, then NOTIFYs `truckllm_config`.
CREATE TABLE truckllm_config_versions (
    version bigint PRIMARY KEY,
    time_ms bigint NOT NULL,
    author  text   NOT NULL,
    comment text   NOT NULL,
    sha256  text   NOT NULL,
    text    text   NOT NULL
);
-- One row: the current version. Saves lock it (SELECT … FOR UPDATE), so they are serialised.
CREATE TABLE truckllm_config_current (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint  NOT NULL REFERENCES truckllm_config_versions (version)
);
