-- Documents: small opaque blobs under a name with a TTL (see crates/truckllm-store/src/docs.rs),
-- for state every gateway instance must see (stored Responses API conversations).
CREATE TABLE truckllm_documents (
    key           text   PRIMARY KEY,
    value         bytea  NOT NULL,
    expires_at_ms bigint NOT NULL
);
CREATE INDEX truckllm_documents_expiry ON truckllm_documents (expires_at_ms);
