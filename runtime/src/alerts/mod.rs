//! Alert rules: their definition and validation (`rules.rs`), their evaluation when an
//! execution ends and periodically (`evaluate.rs`), and the delivery of notifications (signed
//! webhook, Slack-compatible webhook, log) with retries (`deliver.rs`).
//!
//! Deliveries leave through the [`Outbox`]: a bounded queue drained by a background task
//! ([`send_queued`], started by `serve`), so neither an evaluation nor a request waits on a
//! receiver, and a full queue records `dropped` instead of blocking. The client follows no
//! redirects, connects only to checked addresses and stores outcomes in its own words.
//!
//! Evaluated on execution completion: `execution_failure`, `consecutive_failures`,
//! `latency_threshold`, and `execution_paused` when a run ends with its execution paused. A
//! rule fires at most once per cooldown, across nodes (the firing is claimed with one
//! conditional update of the rule row).

mod deliver;
mod evaluate;
mod rules;
#[cfg(test)]
mod tests;

pub use deliver::{
    Alerts, CONCURRENT_DELIVERIES, Delivery, Outbox, Queued, TEST_WAIT, alert_json, send_queued, signature,
};
pub use evaluate::{evaluate_periodic, execution_ended};
pub use rules::{Channel, ChannelKind, MAX_CHANNELS, Notification, RuleDefinition, RuleKind, Scope, validate};

use std::sync::Arc;
use std::time::Duration;

use dibop_core::crypto::Sealer;
use dibop_core::{ExecutionStatus, FieldError, Severity, Window};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use utoipa::ToSchema;

use crate::store::{AlertRow, AlertRuleRow, ExecutionRow, NewAlert, Store};
