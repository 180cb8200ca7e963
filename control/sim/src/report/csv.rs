//! `timeseries.csv`: long format, one value per line, so scripts filter by column instead of
//! parsing a header that depends on the scenario:
//!
//! ```text
//! policy,t_s,metric,service,host,value
//! even,5,p95_ms,,,41.2
//! even,5,host_share,,h1,0.33
//! even,5,service_host_share,text,h1,0.35
//! even,5,containers,text,,2
//! ```
//!
//! Metrics: `requests`, `p50_ms`, `p95_ms`, `p99_ms`, `host_share`, `service_host_share`,
//! `containers`; in scenarios with zones `zone_share` (the `host` column holds the zone: its
//! hosts' `host_share` added up); and in lab runs with zones `zone_rtt_ms` (the `host` column
//! holds the zone pair `caller->callee`).

use std::fmt::Write;

use super::{Report, context::zone_share};

/// Renders the whole time series.
pub(super) fn timeseries(r: &Report) -> String {
    let mut out = String::from("policy,t_s,metric,service,host,value\n");
    for run in &r.runs {
        let p = field(&run.policy);
        for iv in &run.intervals {
            let t = iv.t_s;
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{p},{t},requests,,,{}", iv.requests);
            let _ = writeln!(out, "{p},{t},p50_ms,,,{:.3}", iv.p50_ms);
            let _ = writeln!(out, "{p},{t},p95_ms,,,{:.3}", iv.p95_ms);
            let _ = writeln!(out, "{p},{t},p99_ms,,,{:.3}", iv.p99_ms);
            for (h, v) in &iv.host_share {
                let _ = writeln!(out, "{p},{t},host_share,,{},{v:.4}", field(h));
            }
            for (s, hosts) in &iv.service_host_share {
                for (h, v) in hosts {
                    let _ = writeln!(
                        out,
                        "{p},{t},service_host_share,{},{},{v:.4}",
                        field(s),
                        field(h)
                    );
                }
            }
            if !r.zones.is_empty() {
                for (z, v) in zone_share(iv, &r.zones) {
                    let _ = writeln!(out, "{p},{t},zone_share,,{},{v:.4}", field(&z));
                }
            }
            for (s, n) in &iv.containers {
                let _ = writeln!(out, "{p},{t},containers,{},,{n}", field(s));
            }
            for (pair, v) in &iv.zone_rtt_ms {
                let _ = writeln!(out, "{p},{t},zone_rtt_ms,,{},{v:.3}", field(pair));
            }
        }
    }
    out
}

/// Quotes a field when it holds a comma, a quote or a line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_format_rows() {
        let csv = timeseries(&crate::report::tests::sample());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "policy,t_s,metric,service,host,value");
        assert!(lines.contains(&"even,5,p95_ms,,,50.000"));
        assert!(lines.contains(&"p2c-ewma,30,service_host_share,a,h2,0.5000"));
        assert!(lines.iter().all(|l| l.split(',').count() == 6));
        assert_eq!(field("a,b"), "\"a,b\"");
        assert!(!csv.contains("zone_share"));
        let mut zoned = crate::report::tests::sample();
        zoned.zones = [("h1".into(), "us".into()), ("h2".into(), "us".into())].into();
        assert!(timeseries(&zoned).contains("even,5,zone_share,,us,1.0000\n"));
    }
}
