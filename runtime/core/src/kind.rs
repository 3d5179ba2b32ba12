//! Kinds: the closed lists of `type` names (step types, alert rule types, channel types).
//!
//! Documents are parsed before they are validated, and validation lists every problem with its
//! path, so a name no kind has parses into the kind's `Unknown` variant (validation refuses it)
//! instead of failing the whole document. Text and JSON forms are the names.

/// Declares a kind: an enum of named variants plus `Unknown(String)`, with `KNOWN` (every named
/// variant, in declaration order), `parse`, `as_str`, `Display` and serde as the name.
///
/// ```
/// dibop_core::kinds! {
///     /// A colour.
///     pub enum Colour {
///         /// Red.
///         Red = "red",
///         /// Dark blue.
///         DarkBlue = "dark_blue",
///     }
/// }
///
/// assert_eq!(Colour::parse("dark_blue"), Colour::DarkBlue);
/// assert_eq!(Colour::parse("green"), Colour::Unknown("green".into()));
/// assert_eq!(Colour::KNOWN.len(), 2);
/// ```
#[macro_export]
macro_rules! kinds {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A name no kind has; validation refuses it.
            Unknown(String),
        }

        impl $name {
            /// Every named kind, in the order errors list them.
            pub const KNOWN: [Self; [$($text),+].len()] = [$(Self::$variant),+];

            /// The kind named `text` (`Unknown` when no kind has that name).
            pub fn parse(text: &str) -> Self {
                match text {
                    $($text => Self::$variant,)+
                    other => Self::Unknown(other.to_owned()),
                }
            }

            /// The kind's name, as documents, rows and answers write it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Unknown(name) => name,
                }
            }

            /// The names of every named kind, joined with `, ` (for error messages).
            pub fn names() -> String {
                [$($text),+].join(", ")
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Stored rows: a name no kind has reads as `Unknown`.
        impl From<String> for $name {
            fn from(text: String) -> Self {
                Self::parse(&text)
            }
        }

        impl $crate::serde::Serialize for $name {
            fn serialize<S: $crate::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> $crate::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as $crate::serde::Deserialize>::deserialize(deserializer)?;
                Ok(Self::parse(&text))
            }
        }
    };
}

kinds! {
    /// The `type` of an orchestration step.
    ///
    /// ```
    /// use dibop_core::StepKind;
    ///
    /// let kind: StepKind = serde_json::from_str("\"for_each\"")?;
    /// assert_eq!(kind, StepKind::ForEach);
    /// assert!(kind.is_container());
    /// assert_eq!(serde_json::to_string(&StepKind::parse("teleport"))?, "\"teleport\"");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub enum StepKind {
        /// Calls an operation of a connection's connector.
        ApiCall = "api_call",
        /// Maps its input (`map`) or runs a transform plugin.
        Transform = "transform",
        /// Chooses its `then` or `else` steps.
        Condition = "condition",
        /// Runs its steps when an earlier step failed.
        ErrorHandler = "error_handler",
        /// Runs its body once per item.
        ForEach = "for_each",
        /// Runs its branches side by side.
        Parallel = "parallel",
        /// Runs another orchestration as a child execution.
        SubOrchestration = "sub_orchestration",
        /// Waits for a duration or until an instant.
        Wait = "wait",
        /// Writes a record to a canonical data domain.
        CanonicalUpsert = "canonical_upsert",
    }
}

impl StepKind {
    /// Steps whose work is other steps, a child execution or time: their `timeout_ms` bounds the
    /// whole step rather than each attempt.
    pub fn is_container(&self) -> bool {
        matches!(self, Self::ForEach | Self::Parallel | Self::SubOrchestration | Self::Wait)
    }

    /// Steps that can park their execution (a long wait, a child that parks, a call waiting
    /// for a permit of its connection's rate limit).
    pub fn may_park(&self) -> bool {
        matches!(self, Self::Wait | Self::SubOrchestration | Self::ApiCall)
    }
}

kinds! {
    /// How much an alert matters (a rule's `severity`, copied to the alerts it fires).
    pub enum Severity {
        /// For the record.
        Info = "info",
        /// Someone should look (the default).
        Warning = "warning",
        /// Someone must act now.
        Critical = "critical",
    }
}

kinds! {
    /// Where an orchestration stands; only active and draft ones run.
    pub enum OrchestrationStatus {
        /// Being written: runs when asked (execute), not from its triggers' schedule.
        Draft = "draft",
        /// Runs from every trigger.
        Active = "active",
        /// Runs nothing until it is active again (executions, webhooks, schedules, replays and
        /// resumes are refused).
        Paused = "paused",
        /// Kept for its history; runs nothing.
        Archived = "archived",
    }
}

impl OrchestrationStatus {
    /// Whether executions of it may start (a new one, a replay or a resume).
    pub fn runs(&self) -> bool {
        matches!(self, Self::Draft | Self::Active)
    }
}

kinds! {
    /// What started an execution (`triggered_by`).
    pub enum TriggeredBy {
        /// A person, through execute (or a replay they asked for).
        Manual = "manual",
        /// An API key, through execute (or a replay it asked for).
        Api = "api",
        /// A schedule's slot.
        Schedule = "schedule",
        /// A webhook.
        Event = "event",
        /// A `sub_orchestration` step of another execution.
        Orchestration = "orchestration",
    }
}

/// The WIT world a plugin component implements: what it can be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// Connects a system: `describe`, `invoke`, `ping`; serves connections and `api_call` steps.
    Connector,
    /// Transforms data: `describe`, `run`; serves `transform` steps.
    Transform,
}

impl World {
    /// The world's name, as stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connector => "connector",
            Self::Transform => "transform",
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_kind_reads_back_from_its_name() {
        for kind in StepKind::KNOWN {
            assert_eq!(StepKind::parse(kind.as_str()), kind);
        }
        assert_eq!(StepKind::parse("API_CALL"), StepKind::Unknown("API_CALL".into()));
    }

    #[test]
    fn only_active_and_draft_orchestrations_run() {
        let running: Vec<_> = OrchestrationStatus::KNOWN.into_iter().filter(OrchestrationStatus::runs).collect();
        assert_eq!(running, [OrchestrationStatus::Draft, OrchestrationStatus::Active]);
        assert!(!OrchestrationStatus::parse("deleted").runs());
        assert_eq!(TriggeredBy::names(), "manual, api, schedule, event, orchestration");
    }
}
