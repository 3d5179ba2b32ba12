-- Alert rules, the alerts they fired, and how their notifications went.
CREATE TABLE alert_rules (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- The rule as sent (type, scope, condition, notification, cooldown_minutes, enabled).
    definition TEXT NOT NULL,
    -- The HMAC key of the webhook channel, sealed like connection credentials.
    secret TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    -- Set when the rule fires; the cooldown runs from here (claimed atomically: once across nodes).
    last_fired_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX alert_rules_by_enterprise ON alert_rules (enterprise_id, created_at);

CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id) ON DELETE CASCADE,
    rule_id TEXT NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    severity TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    threshold REAL NOT NULL,
    message TEXT NOT NULL,
    fired_at INTEGER NOT NULL,
    -- JSON: per channel, its outcome and attempts.
    deliveries TEXT NOT NULL
);
CREATE INDEX alerts_by_enterprise ON alerts (enterprise_id, fired_at);
