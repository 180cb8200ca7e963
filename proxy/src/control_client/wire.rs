//! A report as it goes on the wire. The field conversions are the core's (`loadshift_core::proto`);
//! this adds what only the client knows: the sequence number, the send time and the window the
//! offered counts cover.

use loadshift_proto::v1 as pb;

use super::ProxyReport;

/// `seq` and the send time are the session's.
pub(super) fn report_to_proto(seq: u64, sent_unix_ms: i64, r: &ProxyReport) -> pb::Report {
    let mut offered_window_s = 0.0f64;
    let endpoints = r
        .endpoints
        .iter()
        .map(|e| {
            offered_window_s = offered_window_s.max(e.window.window_s);
            pb::EndpointReport {
                service: e.service.clone(),
                endpoint: Some((&e.endpoint).into()),
                window: Some((&e.window).into()),
                in_flight: e.in_flight,
                ewma_ms: e.ewma_ms,
            }
        })
        .collect();
    pb::Report {
        seq,
        sent_unix_ms,
        endpoints,
        inbound: r.inbound.as_ref().map(pb::Window::from),
        host: Some((&r.host).into()),
        usage: r.usage.as_ref().map(pb::ContainerUsage::from),
        blocked: r
            .blocked
            .iter()
            .map(|(service, class, count)| pb::BlockedCount {
                service: service.clone(),
                class: class.clone(),
                count: *count,
            })
            .collect(),
        offered: r
            .offered
            .iter()
            .map(|(service, count)| pb::OfferedCount {
                service: service.clone(),
                count: *count,
                // Offered counts cover the same window as the endpoint windows.
                window_s: if offered_window_s > 0.0 {
                    offered_window_s
                } else {
                    r.inbound.map_or(0.0, |w| w.window_s)
                },
            })
            .collect(),
    }
}
