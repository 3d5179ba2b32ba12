//! Sending notifications: the bounded [`Outbox`] drained by [`send_queued`], one delivery per
//! channel with retries, signed webhooks, and the outcome words stored with each alert.

use super::*;

/// The JSON body of a notification (the fired alert, as `GET /alerts` shows it).
pub fn alert_json(rule: &AlertRuleRow, alert: &AlertRow) -> Value {
    json!({
        "id": alert.id, "rule_id": alert.rule_id, "rule_name": rule.name, "severity": alert.severity,
        "metric": alert.metric, "value": alert.value, "threshold": alert.threshold, "message": alert.message,
        "fired_at": chrono::DateTime::from_timestamp_millis(alert.fired_at).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("sha256={}", crate::crypto::hex(&digest))
}

/// Alerts the background sender delivers at once (each to its channels concurrently).
pub const CONCURRENT_DELIVERIES: usize = 8;

/// Attempts per channel and alert.
const ATTEMPTS: u32 = 3;

/// Timeout of one attempt (connect, TLS, request and response head).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `POST /alert-rules/{id}/test` waits for its own deliveries: three attempts with
/// their pauses, plus room for a queue that is busy.
pub const TEST_WAIT: Duration = Duration::from_secs(45);

/// One alert to deliver; `reply` hears its outcomes.
pub struct Delivery {
    row: AlertRuleRow,
    rule: RuleDefinition,
    alert: AlertRow,
    reply: Option<tokio::sync::oneshot::Sender<Value>>,
}

/// The queue of alert deliveries and the HTTP client they go out with: no redirects, no proxy,
/// connections only to addresses that passed [`crate::egress`]'s check, TLS with the
/// configured roots.
pub struct Outbox {
    queue: tokio::sync::mpsc::Sender<Delivery>,
    client: reqwest::Client,
    allow_private: bool,
}

/// The receiving end of the [`Outbox`], for [`send_queued`].
pub struct Queued(tokio::sync::mpsc::Receiver<Delivery>);

impl Outbox {
    /// An outbox holding at most `capacity` alerts (at least one) besides the
    /// [`CONCURRENT_DELIVERIES`] being delivered. Beyond that, a new alert's notifications are
    /// recorded as `dropped` instead of queued: a flood of firings never blocks the request or
    /// the evaluation that raised them, nor grows memory without bound.
    pub fn new(tls: &rustls::ClientConfig, allow_private: bool, capacity: usize) -> anyhow::Result<(Self, Queued)> {
        let resolver =
            Arc::new(crate::egress::CheckedDns { resolver: Arc::new(crate::egress::SystemResolver), allow_private });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(resolver)
            .use_preconfigured_tls(tls.clone())
            .connect_timeout(Duration::from_secs(5))
            .timeout(ATTEMPT_TIMEOUT)
            .build()?;
        let (queue, receiver) = tokio::sync::mpsc::channel(capacity.max(1));
        Ok((Self { queue, client, allow_private }, Queued(receiver)))
    }
}

/// What alert evaluation and delivery need: the store, the sealer that opens channel secrets
/// and the delivery queue. Cheap to clone; the engine's events reach it without the server's
/// whole state.
#[derive(Clone)]
pub struct Alerts {
    pub store: Store,
    pub sealer: Arc<Sealer>,
    pub outbox: Arc<Outbox>,
}

impl Alerts {
    /// Queues the alert's notifications without waiting. When the queue is full, records them
    /// as `dropped` and answers those outcomes; otherwise answers `None` and `reply` (if any)
    /// hears the outcomes once delivered.
    pub async fn queue(
        &self,
        row: &AlertRuleRow,
        rule: &RuleDefinition,
        alert: &AlertRow,
        reply: Option<tokio::sync::oneshot::Sender<Value>>,
    ) -> anyhow::Result<Option<Value>> {
        let delivery = Delivery { row: row.clone(), rule: rule.clone(), alert: alert.clone(), reply };
        match self.outbox.queue.try_send(delivery) {
            Ok(()) => Ok(None),
            Err(_) => {
                tracing::warn!(rule = %row.name, alert = %alert.id, "alert delivery queue full; notifications dropped");
                let outcomes = Value::Array(
                    channels(rule)
                        .map(|c| {
                            json!({"type": c.kind, "url": c.shown_url(), "attempts": 0, "status": "dropped",
                                        "error": "delivery queue full"})
                        })
                        .collect(),
                );
                self.store.set_alert_deliveries(&alert.id, &outcomes.to_string()).await?;
                Ok(Some(outcomes))
            }
        }
    }

    /// Queues the alert and waits (at most `wait`) for its outcomes; answers `pending` ones
    /// for channels it stopped waiting for.
    pub async fn deliver_and_wait(
        &self,
        row: &AlertRuleRow,
        rule: &RuleDefinition,
        alert: &AlertRow,
        wait: Duration,
    ) -> anyhow::Result<Value> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Some(dropped) = self.queue(row, rule, alert, Some(tx)).await? {
            return Ok(dropped);
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(_)) => anyhow::bail!("delivering alert {} failed", alert.id),
            Err(_) => Ok(Value::Array(
                channels(rule).map(|c| json!({"type": c.kind, "url": c.shown_url(), "status": "pending"})).collect(),
            )),
        }
    }
}

/// The channels delivered to: at most [`MAX_CHANNELS`] (rules stored before the limit too).
fn channels(rule: &RuleDefinition) -> impl Iterator<Item = &Channel> {
    rule.notification.channels.iter().take(MAX_CHANNELS)
}

/// The background sender: delivers queued alerts, [`CONCURRENT_DELIVERIES`] at a time, until
/// `stopped` flips (deliveries in flight then are abandoned).
pub async fn send_queued(ctx: Alerts, queued: Queued, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let Queued(mut receiver) = queued;
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DELIVERIES));
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        while in_flight.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = stopped.changed() => return,
        };
        let Ok(slot) = slot else { return };
        let delivery = tokio::select! {
            delivery = receiver.recv() => delivery,
            _ = stopped.changed() => return,
        };
        let Some(Delivery { row, rule, alert, reply }) = delivery else { return };
        let ctx = ctx.clone();
        in_flight.spawn(async move {
            let _slot = slot;
            match deliver(&ctx, &row, &rule, &alert).await {
                Ok(outcomes) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(outcomes);
                    }
                }
                Err(err) => {
                    tracing::warn!(alert = %alert.id, error = %format!("{err:#}"), "delivering an alert failed");
                }
            }
        });
    }
}

/// Sends the alert to every channel of the rule at once, each with up to three attempts
/// (0.5 s, then 1 s apart), and stores how each went; answers that record. Outcomes name what
/// happened in our words (`http 500`, `redirect refused`, `address refused`, `tls failed`,
/// `connection failed`, `timeout`), never the system's error text: a receiver URL must not turn
/// the server into a scanner of what it can reach.
pub(super) async fn deliver(
    ctx: &Alerts,
    row: &AlertRuleRow,
    rule: &RuleDefinition,
    alert: &AlertRow,
) -> anyhow::Result<Value> {
    let secret = ctx.sealer.open(&row.secret)?;
    let body = serde_json::to_vec(&alert_json(row, alert))?;
    let text = format!("[{}] {}: {}", alert.severity, row.name, alert.message);
    let slack = serde_json::to_vec(&json!({"text": text}))?;
    let sends = channels(rule).map(|channel| {
        let (payload, signed) = match channel.kind {
            ChannelKind::Slack => (slack.clone(), false),
            _ => (body.clone(), true),
        };
        let signed = signed.then(|| signature(&secret, &payload));
        async move {
            if channel.kind == ChannelKind::Log {
                tracing::warn!(rule = %row.name, severity = %alert.severity, message = %alert.message, "alert fired");
                return json!({"type": "log", "status": "delivered", "attempts": 1});
            }
            let url = channel.url.clone().unwrap_or_default();
            let (attempts, error) = post(&ctx.outbox, &url, payload, signed).await;
            json!({
                "type": channel.kind, "url": channel.shown_url(), "attempts": attempts,
                "status": if error.is_none() { "delivered" } else { "failed" }, "error": error,
            })
        }
    });
    let outcomes = Value::Array(futures_util::future::join_all(sends).await);
    ctx.store.set_alert_deliveries(&alert.id, &outcomes.to_string()).await?;
    Ok(outcomes)
}

/// POSTs `payload` to `url` with retries; answers the attempts made and the last failure.
async fn post(outbox: &Outbox, url: &str, payload: Vec<u8>, signed: Option<String>) -> (u32, Option<String>) {
    let Ok(parsed) = reqwest::Url::parse(url) else { return (0, Some("invalid url".into())) };
    // reqwest asks no resolver about IP-literal hosts: those are judged here.
    let literal = parsed
        .host_str()
        .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().ok());
    if literal.is_some_and(|ip| !outbox.allow_private && crate::egress::is_blocked(ip)) {
        return (0, Some(ADDRESS_REFUSED.into()));
    }
    let mut attempts = 0;
    let mut delay = Duration::from_millis(500);
    loop {
        attempts += 1;
        let mut request =
            outbox.client.post(parsed.clone()).header("content-type", "application/json").body(payload.clone());
        if let Some(signature) = &signed {
            request = request.header("x-dibop-signature", signature);
        }
        let failure = match request.send().await {
            Ok(response) if response.status().is_success() => return (attempts, None),
            // A redirect could lead anywhere (and a 307 would carry the signed body along).
            Ok(response) if response.status().is_redirection() => return (attempts, Some("redirect refused".into())),
            Ok(response) => format!("http {}", response.status().as_u16()),
            Err(err) => match failure(&err) {
                ADDRESS_REFUSED => return (attempts, Some(ADDRESS_REFUSED.into())),
                other => other.to_owned(),
            },
        };
        if attempts >= ATTEMPTS {
            return (attempts, Some(failure));
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

const ADDRESS_REFUSED: &str = "address refused";

/// What went wrong with a request, in the outcome vocabulary (never the system's error text).
pub(super) fn failure(err: &reqwest::Error) -> &'static str {
    if caused_by::<crate::egress::Refusal>(err) {
        ADDRESS_REFUSED
    } else if caused_by::<rustls::Error>(err) {
        "tls failed"
    } else if err.is_timeout() {
        "timeout"
    } else {
        "connection failed"
    }
}

/// Whether a `T` is among the causes of `err`, looking inside wrapping `io::Error`s too (their
/// `source()` skips the error they wrap, and hyper-rustls wraps rustls' one twice).
fn caused_by<T: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<T>() {
            return true;
        }
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && caused_by::<T>(inner)
        {
            return true;
        }
        next = e.source();
    }
    false
}
