use serde_json::json;

use super::deliver::signature;
use super::rules::positive;
use super::*;

/// A rule from its JSON form, as the API takes it.
fn rule(value: Value) -> RuleDefinition {
    serde_json::from_value(value).expect("a rule")
}

/// The paths of `rule`'s problems.
fn problems(value: Value) -> Vec<String> {
    validate(&rule(value)).into_iter().map(|e| e.path).collect()
}

#[test]
fn a_complete_rule_of_each_type_is_valid_and_defaults_fill_the_rest() {
    let log = json!({"channels": [{"type": "log"}]});
    for (kind, condition, scope) in [
        ("execution_failure", Value::Null, json!({})),
        ("execution_paused", Value::Null, json!({})),
        ("consecutive_failures", json!({"threshold": 3}), json!({})),
        ("latency_threshold", json!({"threshold_ms": 5000}), json!({})),
        ("sla_breach", json!({"window": "24h", "target": 99.5}), json!({})),
        ("system_down", json!({"threshold": 3}), json!({"system": "dms"})),
        ("error_rate_spike", json!({"threshold_percent": 20, "window": "15m"}), json!({})),
    ] {
        let body = json!({"name": kind, "type": kind, "condition": condition, "scope": scope, "notification": log});
        assert_eq!(problems(body.clone()), Vec::<String>::new(), "{kind}");
        let parsed = rule(body);
        assert_eq!((parsed.cooldown_minutes, parsed.enabled, parsed.severity.as_str()), (15, true, "warning"));
    }
}

#[test]
fn every_problem_of_a_rule_is_listed_with_its_path() {
    let found = problems(json!({
        "name": " ", "type": "consecutive_failures", "condition": {"threshold": 0, "window": "fortnight", "target": 120},
        "severity": "loud", "cooldown_minutes": 20_000,
        "notification": {"channels": [{"type": "webhook"}, {"type": "slack", "url": "ftp://x"}, {"type": "pager"}]}
    }));
    assert_eq!(
        found,
        [
            "name",
            "condition.threshold",
            "condition.window",
            "condition.target",
            "severity",
            "cooldown_minutes",
            "notification.channels[0].url",
            "notification.channels[1].url",
            "notification.channels[2].type",
        ]
    );
    assert_eq!(
        problems(json!({"name": "n", "type": "teleport", "notification": {"channels": [{"type": "log"}]}})),
        ["type"]
    );
    assert_eq!(
        problems(json!({"name": "n", "type": "system_down", "notification": {"channels": [{"type": "log"}]}})),
        ["scope.system"]
    );
    let spike = json!({"name": "n", "type": "error_rate_spike", "condition": {"threshold_percent": 0},
                       "notification": {"channels": [{"type": "log"}]}});
    assert_eq!(problems(spike), ["condition.threshold_percent"]);
}

#[test]
fn a_rule_has_one_to_five_channels() {
    let channels = |n: usize| json!({"channels": vec![json!({"type": "log"}); n]});
    let with = |n: usize| json!({"name": "n", "type": "execution_failure", "notification": channels(n)});
    assert_eq!(problems(with(0)), ["notification.channels"]);
    assert!(problems(with(MAX_CHANNELS)).is_empty());
    assert_eq!(problems(with(MAX_CHANNELS + 1)), ["notification.channels"]);
}

#[test]
fn thresholds_are_whole_numbers_of_at_least_one() {
    assert_eq!(positive(&json!({"threshold": 3}), "threshold"), Some(3));
    for wrong in
        [json!({"threshold": 0}), json!({"threshold": -1}), json!({"threshold": 2.5}), json!({"threshold": "3"})]
    {
        assert_eq!(positive(&wrong, "threshold"), None, "{wrong}");
    }
    assert_eq!(positive(&Value::Null, "threshold"), None);
}

#[test]
fn a_webhook_signature_is_the_hex_hmac_sha256_of_the_body() {
    // RFC 4231, test case 2.
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
