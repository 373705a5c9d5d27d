//! `driftwatch_agent_heartbeat_age_seconds{host, host_id}`: seconds since each host's last
//! heartbeat (since enrollment before the first), rendered at each scrape. Pure.
//!
//! Cardinality is bounded: only the `cap` stalest hosts get a series, and
//! `driftwatch_agent_heartbeat_age_hosts_omitted` counts the rest. The stalest are the
//! ones an alert on heartbeat age needs, so the cap loses nothing for alerting until more
//! than `cap` hosts are stale at once (and `driftwatch_agents_silent` still counts all of
//! them). Buckets of ages would bound the series too, but would not say which host.

use std::fmt::Write as _;

/// One host as the gauge sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSeen<'a> {
    pub host_id: String,
    pub hostname: &'a str,
    /// Last heartbeat, or enrollment; collector clock, ms.
    pub seen_at: i64,
}

/// The two families as exposition text, the stalest `cap` hosts first.
pub fn exposition(hosts: &[HostSeen<'_>], now_ms: i64, cap: usize) -> String {
    let mut stalest: Vec<&HostSeen<'_>> = hosts.iter().collect();
    // Oldest first; ties by id so the chosen set is stable between scrapes.
    stalest.sort_by(|a, b| {
        a.seen_at
            .cmp(&b.seen_at)
            .then_with(|| a.host_id.cmp(&b.host_id))
    });
    let shown = stalest.len().min(cap);
    let mut out = String::new();
    out.push_str(
        "# HELP driftwatch_agent_heartbeat_age_seconds Seconds since the host's last heartbeat \
         (since enrollment before the first); only the stalest hosts, see \
         driftwatch_agent_heartbeat_age_hosts_omitted\n\
         # TYPE driftwatch_agent_heartbeat_age_seconds gauge\n",
    );
    for host in &stalest[..shown] {
        let age = (now_ms - host.seen_at).max(0) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "driftwatch_agent_heartbeat_age_seconds{{host=\"{}\",host_id=\"{}\"}} {age}",
            label_value(host.hostname),
            label_value(&host.host_id),
        );
    }
    let _ = write!(
        out,
        "# HELP driftwatch_agent_heartbeat_age_hosts_omitted Hosts left out of \
         driftwatch_agent_heartbeat_age_seconds (the most recently seen) to bound its series\n\
         # TYPE driftwatch_agent_heartbeat_age_hosts_omitted gauge\n\
         driftwatch_agent_heartbeat_age_hosts_omitted {}\n",
        stalest.len() - shown
    );
    out
}

/// A label value as the text format wants it: backslash, double quote and line feed
/// escaped.
fn label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, name: &'static str, seen_at: i64) -> HostSeen<'static> {
        HostSeen {
            host_id: id.into(),
            hostname: name,
            seen_at,
        }
    }

    #[test]
    fn the_stalest_hosts_get_series_and_the_rest_are_counted() {
        let hosts = [
            host("b", "fresh", 99_000),
            host("a", "stale", 10_000),
            host("c", "older", 50_000),
        ];
        let text = exposition(&hosts, 100_000, 2);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "driftwatch_agent_heartbeat_age_seconds{host=\"stale\",host_id=\"a\"} 90",
                "driftwatch_agent_heartbeat_age_seconds{host=\"older\",host_id=\"c\"} 50",
                "driftwatch_agent_heartbeat_age_hosts_omitted 1",
            ]
        );
        assert!(text.contains("# HELP driftwatch_agent_heartbeat_age_seconds "));
        assert!(text.contains("# TYPE driftwatch_agent_heartbeat_age_hosts_omitted gauge"));
    }

    #[test]
    fn no_cap_no_series_and_odd_names_are_escaped() {
        let hosts = [host("a", "we\"ird\\\nname", 0)];
        let none = exposition(&hosts, 1_500, 0);
        assert!(none.ends_with("driftwatch_agent_heartbeat_age_hosts_omitted 1\n"));
        assert!(!none.contains("{host="));
        let one = exposition(&hosts, 1_500, 10);
        assert!(
            one.contains("{host=\"we\\\"ird\\\\\\nname\",host_id=\"a\"} 1.5\n"),
            "{one}"
        );
        // A clock that went back shows 0, never a negative age.
        assert!(exposition(&hosts, -5, 1).contains("host_id=\"a\"} 0\n"));
    }
}
