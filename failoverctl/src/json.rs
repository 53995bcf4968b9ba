//! `failoverctl status --json`: the verdict and the daemons' own status files, passed on.

use serde::Serialize;
use serde_json::Value;

use crate::health::Health;
use crate::observe::{Daemon, Seen};

#[derive(Debug, Serialize)]
struct Report<'a> {
    health: &'static str,
    exit_code: i32,
    reasons: &'a [String],
    daemons: PerDaemon<Option<&'a Value>>,
    stale: PerDaemon<bool>,
}

#[derive(Debug, Serialize)]
struct PerDaemon<T> {
    failoverd: T,
    heartbeatd: T,
}

/// One JSON object: `health`, `exit_code`, `reasons`, `daemons` (each file's JSON as written,
/// or null when there is none) and `stale` (true for a file that exists but is stale or
/// unreadable).
pub fn render_json(seen: &Seen, health: &Health) -> String {
    let report = Report {
        health: health.level.as_str(),
        exit_code: health.exit_code(),
        reasons: &health.reasons,
        daemons: PerDaemon {
            failoverd: seen.failoverd.raw(),
            heartbeatd: seen.heartbeatd.raw(),
        },
        stale: PerDaemon {
            failoverd: health.of(Daemon::Failoverd).is_unusable(),
            heartbeatd: health.of(Daemon::Heartbeatd).is_unusable(),
        },
    };
    // Serialising strings, numbers and JSON values cannot fail; the fallback keeps it total.
    let mut text = serde_json::to_string_pretty(&report).unwrap_or_else(|e| {
        format!(
            "{{\"health\": \"down\", \"exit_code\": 2, \"reasons\": [{:?}]}}",
            e.to_string()
        )
    });
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::health;
    use crate::health::tests::*;

    #[test]
    fn passes_the_files_on_and_says_why() {
        let mut stale = heartbeatd();
        stale.updated_at_ms = NOW - 60_000;
        let both = seen(Some(failed_over()), Some(stale.clone()));
        let h = health(&both, NOW, HOST);
        let v: Value = serde_json::from_str(&render_json(&both, &h)).unwrap();
        assert_eq!(v["health"], "down");
        assert_eq!(v["exit_code"], 2);
        assert_eq!(v["reasons"].as_array().unwrap().len(), 2);
        assert_eq!(v["stale"]["failoverd"], false);
        assert_eq!(v["stale"]["heartbeatd"], true);
        assert_eq!(
            v["daemons"]["failoverd"],
            serde_json::to_value(failed_over()).unwrap()
        );
        assert_eq!(
            v["daemons"]["heartbeatd"],
            serde_json::to_value(stale).unwrap()
        );

        let one = seen(None, Some(heartbeatd()));
        let h = health(&one, NOW, HOST);
        let v: Value = serde_json::from_str(&render_json(&one, &h)).unwrap();
        assert_eq!(v["health"], "healthy");
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["reasons"], Value::Array(vec![]));
        assert_eq!(v["daemons"]["failoverd"], Value::Null);
        assert_eq!(v["stale"]["failoverd"], false);
    }
}
