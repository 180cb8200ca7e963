//! Server-reported load in band, the `loadshift-load` field (docs/protocols.md): the inbound
//! sidecar's report of its app's requests in flight and latency, carried on the responses it
//! forwards to mesh callers, which is what `prequal` balances on (`loadshift_core::balance::
//! prequal`). One module for both sides: the inbound side writes the field, the outbound side
//! (and an HTTP/1.1 head parser, `h1::fields`) reads it.
//!
//! ```text
//! request  (caller's proxy -> callee's inbound sidecar)   loadshift-load: ask
//! response (callee's inbound sidecar -> caller's proxy)   loadshift-load: rif=3;lat=12.500;app=11.800
//!
//! report = "rif=" 1*6DIGIT ";lat=" ms [ ";app=" ms ]      at most 48 bytes
//! ms     = 1*6DIGIT [ "." 1*3DIGIT ]
//! ```
//!
//! `rif`: the app's requests in flight when the response left (this one done); `lat`: the app's
//! latency estimate at that many, milliseconds (`loadshift_core::telemetry::RifLatency`); `app`:
//! this response's own time at the app, from which the caller learns what the network and the
//! proxies add on its path to that endpoint (its call's latency minus `app`). The parser takes
//! exactly that and refuses anything else (spaces, other keys or order, signs, exponents, more
//! digits), so a field from an app or a peer that is not a loadshift sidecar is dropped, never
//! half read. Every proxy asks on every request it sends upstream, replacing what
//! its client sent; the inbound side answers only a request that asked, and removes the field in
//! both directions, so an application never sees it.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The field, in both directions.
pub const NAME: HeaderName = HeaderName::from_static("loadshift-load");
/// A request's value: the caller wants the report.
pub const ASK: HeaderValue = HeaderValue::from_static("ask");
/// Longest report accepted (`rif=999999;lat=999999.999;app=999999.999` is 40 bytes).
pub const MAX_LEN: usize = 48;

/// Largest value of either number that is written as is; larger ones are written as this.
const MAX_RIF: u32 = 999_999;
const MAX_LATENCY_MS: f64 = 999_999.999;

/// An app's load as its inbound sidecar reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    /// Requests in flight at the app.
    pub rif: u32,
    /// Its latency estimate at that load, milliseconds.
    pub latency_ms: f64,
    /// This response's own time at the app, milliseconds.
    pub app_ms: Option<f64>,
}

/// A response's `loadshift-load` field as it came: a report, or something else.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Carried {
    Report(Report),
    /// Malformed, oversized or repeated: dropped, and counted.
    Invalid,
}

impl Carried {
    /// The field's value as received.
    pub fn of(value: &[u8]) -> Self {
        parse(value).map_or(Self::Invalid, Self::Report)
    }
}

/// Parses a report; `None` for anything the grammar does not allow.
pub fn parse(value: &[u8]) -> Option<Report> {
    if value.len() > MAX_LEN {
        return None;
    }
    let rest = value.strip_prefix(b"rif=")?;
    let semi = rest.iter().position(|&b| b == b';')?;
    let (rif, rest) = (&rest[..semi], rest[semi..].strip_prefix(b";lat=")?);
    let (lat, app) = match rest.iter().position(|&b| b == b';') {
        Some(semi) => (&rest[..semi], Some(rest[semi..].strip_prefix(b";app=")?)),
        None => (rest, None),
    };
    if !digits(rif, 6) {
        return None;
    }
    // Digits only, at most six of them: it parses.
    let rif = std::str::from_utf8(rif).ok()?.parse().ok()?;
    let app_ms = match app {
        Some(a) => Some(millis(a)?),
        None => None,
    };
    Some(Report {
        rif,
        latency_ms: millis(lat)?,
        app_ms,
    })
}

/// `1*max` ASCII digits.
fn digits(s: &[u8], max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.iter().all(u8::is_ascii_digit)
}

/// `ms = 1*6DIGIT [ "." 1*3DIGIT ]`.
fn millis(s: &[u8]) -> Option<f64> {
    let (whole, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], Some(&s[dot + 1..])),
        None => (s, None),
    };
    if !digits(whole, 6) || frac.is_some_and(|f| !digits(f, 3)) {
        return None;
    }
    // Digits and at most one dot, as `f64` reads them.
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// The value the inbound side writes for `r` (numbers past the grammar's six digits written as
/// the largest it allows; a time that is not a finite, non-negative number as 0).
pub fn format(r: Report) -> HeaderValue {
    let ms = |v: f64| {
        if v.is_finite() {
            v.clamp(0.0, MAX_LATENCY_MS)
        } else {
            0.0
        }
    };
    let (rif, lat) = (r.rif.min(MAX_RIF), ms(r.latency_ms));
    let text = match r.app_ms {
        Some(app) => format!("rif={rif};lat={lat:.3};app={:.3}", ms(app)),
        None => format!("rif={rif};lat={lat:.3}"),
    };
    // Digits, `rif=`, `;lat=` and a dot: always a valid field value.
    HeaderValue::from_str(&text).unwrap_or(ASK)
}

/// A request leaving for an upstream asks for the report (whatever its client sent).
pub fn ask(headers: &mut HeaderMap) {
    headers.insert(NAME, ASK);
}

/// A request arriving at the inbound side: whether it asked, the field removed so the app never
/// sees it.
pub fn asked(headers: &mut HeaderMap) -> bool {
    headers.remove(NAME).is_some()
}

/// A response's field taken out of its header map (an HTTP/2 upstream's, or any map): `None`
/// without one; more than one is invalid.
pub fn take(headers: &mut HeaderMap) -> Option<Carried> {
    let two = headers.get_all(NAME).iter().nth(1).is_some();
    let v = headers.remove(NAME)?;
    Some(if two {
        Carried::Invalid
    } else {
        Carried::of(v.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_exactly_the_grammar() {
        let ok = |s: &str, rif, latency_ms, app_ms| {
            let want = Report {
                rif,
                latency_ms,
                app_ms,
            };
            assert_eq!(parse(s.as_bytes()), Some(want), "{s}");
        };
        ok("rif=3;lat=12.5", 3, 12.5, None);
        ok("rif=0;lat=0", 0, 0.0, None);
        ok("rif=999999;lat=999999.999", 999_999, 999_999.999, None);
        ok("rif=007;lat=01.250", 7, 1.25, None);
        ok("rif=3;lat=12.5;app=11.75", 3, 12.5, Some(11.75));
        ok(
            "rif=999999;lat=999999.999;app=999999.999",
            999_999,
            999_999.999,
            Some(999_999.999),
        );
        for bad in [
            "",
            "rif=3",
            "rif=3;lat=",
            "rif=;lat=1",
            "rif=3;lat=1.",
            "rif=3;lat=.5",
            "rif=3;lat=1.2345",
            "rif=1000000;lat=1",
            "rif=3;lat=1000000",
            "rif=-3;lat=1",
            "rif=3;lat=-1",
            "rif=3;lat=1e3",
            "rif=3;lat=inf",
            "rif=3; lat=1",
            " rif=3;lat=1",
            "rif=3;lat=1 ",
            "lat=1;rif=3",
            "RIF=3;LAT=1",
            "rif=3;lat=1;x=2",
            "rif=3;lat=1;app=",
            "rif=3;lat=1;app=1;app=1",
            "rif=3;lat=1;app=1.2345",
            "rif=3;app=1;lat=1",
            "rif=3;lat=1;",
            "rif=3;lat=1.5.5",
            "rif=+3;lat=1",
            "rif=3;lat=00000000000000000000000001",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn writes_what_it_reads_clamped_to_the_grammar() {
        let r = Report {
            rif: 3,
            latency_ms: 12.5,
            app_ms: None,
        };
        assert_eq!(format(r), "rif=3;lat=12.500");
        let r = Report {
            app_ms: Some(11.0),
            ..r
        };
        assert_eq!(format(r), "rif=3;lat=12.500;app=11.000");
        let big = Report {
            rif: u32::MAX,
            latency_ms: 1e12,
            app_ms: Some(1e12),
        };
        assert_eq!(format(big), "rif=999999;lat=999999.999;app=999999.999");
        assert!(format(big).len() <= MAX_LEN);
        let nan = Report {
            rif: 1,
            latency_ms: f64::NAN,
            app_ms: Some(-1.0),
        };
        assert_eq!(format(nan), "rif=1;lat=0.000;app=0.000");
    }

    #[test]
    fn asking_and_taking_remove_the_field() {
        let mut h = HeaderMap::new();
        h.insert(NAME, HeaderValue::from_static("from the client"));
        ask(&mut h);
        assert_eq!(h[NAME], "ask");
        assert!(asked(&mut h) && h.is_empty() && !asked(&mut h));
        h.insert(NAME, HeaderValue::from_static("rif=2;lat=3"));
        assert_eq!(
            take(&mut h),
            Some(Carried::Report(Report {
                rif: 2,
                latency_ms: 3.0,
                app_ms: None,
            }))
        );
        assert!(h.is_empty());
        h.append(NAME, HeaderValue::from_static("rif=2;lat=3"));
        h.append(NAME, HeaderValue::from_static("rif=2;lat=3"));
        assert_eq!(take(&mut h), Some(Carried::Invalid));
        assert!(h.is_empty() && take(&mut h).is_none());
    }

    /// The grammar, written independently of the parser.
    fn grammatical(s: &[u8]) -> bool {
        let Ok(s) = std::str::from_utf8(s) else {
            return false;
        };
        let Some((rif, rest)) = s.strip_prefix("rif=").and_then(|r| r.split_once(";lat=")) else {
            return false;
        };
        let (lat, app) = match rest.split_once(";app=") {
            Some((l, a)) => (l, Some(a)),
            None => (rest, None),
        };
        let num = |d: &str, n: usize| {
            !d.is_empty() && d.len() <= n && d.bytes().all(|b| b.is_ascii_digit())
        };
        let ms = |v: &str| match v.split_once('.') {
            Some((w, f)) => num(w, 6) && num(f, 3),
            None => num(v, 6),
        };
        s.len() <= MAX_LEN && num(rif, 6) && ms(lat) && app.is_none_or(ms)
    }

    proptest! {
        #[test]
        fn round_trips(rif in any::<u32>(), latency_ms in 0.0f64..2e6, app in proptest::option::of(0.0f64..2e6)) {
            let v = format(Report { rif, latency_ms, app_ms: app });
            prop_assert!(v.len() <= MAX_LEN);
            let r = parse(v.as_bytes()).unwrap();
            let near = |a: f64, b: f64| (a - b.min(MAX_LATENCY_MS)).abs() <= 0.0005 + 1e-9;
            prop_assert_eq!(r.rif, rif.min(MAX_RIF));
            prop_assert!(near(r.latency_ms, latency_ms));
            prop_assert_eq!(r.app_ms.is_some(), app.is_some());
            prop_assert!(r.app_ms.zip(app).is_none_or(|(a, b)| near(a, b)));
        }

        #[test]
        fn accepts_only_the_grammar(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(parse(&bytes).is_some(), grammatical(&bytes));
        }

        #[test]
        fn accepts_only_the_grammar_near_misses(s in "rif=[0-9+-]{0,7};lat=[0-9.e-]{0,9}(;app=[0-9.;a-]{0,9})?") {
            prop_assert_eq!(parse(s.as_bytes()).is_some(), grammatical(s.as_bytes()));
        }
    }
}
