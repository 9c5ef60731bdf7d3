-- The audit log is listed newest first by time (at, then id), filtered by action, actor (its id
-- or its name), target or a time range. Each listing reads one of these indexes backwards from
-- where it starts and stops after a page, however many events the tenant has: the tenant's
-- events by time (also for a time range), and by action, actor id, actor name or target, each by
-- time. They replace the indexes by id, which only served listings in id order.
DROP INDEX audit_events_tenant;
DROP INDEX audit_events_target;
CREATE INDEX audit_events_at ON audit_events (tenant_id, at, id);
CREATE INDEX audit_events_action ON audit_events (tenant_id, action, at, id);
CREATE INDEX audit_events_actor_id ON audit_events (tenant_id, actor_id, at, id);
CREATE INDEX audit_events_actor_name ON audit_events (tenant_id, actor_name, at, id);
CREATE INDEX audit_events_target ON audit_events (tenant_id, target_id, at, id);
