-- apbatch purge deletes a tenant's calls older than its audit retention.
CREATE INDEX IF NOT EXISTS calls_tenant_at ON calls (tenant, at)
