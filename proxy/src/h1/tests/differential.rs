//! The proxy's reading of a byte stream against hyper's ([`super::reference`]): request by
//! request, the same method, target, version and body, and the same decision whether the next
//! request is read. Where they part, the proxy must be the one that refuses, for a reason on the
//! allow-list ([`Stricter`]) and with hyper's own reading showing that reason; accepting what
//! hyper refuses, reading further than hyper, or accepting the same bytes with another framing
//! fails the test.

use std::collections::BTreeSet;

use http::header;
use proptest::{strategy::Strategy, test_runner::TestRunner};

use super::{Seen, config, inputs, ours, reference};
use crate::h1::request::HeadError;

/// Deliberate strictness of the proxy that hyper does not share. Each entry names the rule and
/// is admitted only when hyper's reading of the same request shows the trait it is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stricter {
    /// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host. hyper leaves Host to the
    /// application; the proxy routes by it, so a request without one, or with two that two
    /// hops could pick differently, is refused (400).
    NoHost,
    /// The same rule: two Host fields.
    DuplicateHost,
    /// A Host that is not `host[:port]` (RFC 3986 §3.2.2): user info, spaces, a port above
    /// 65535. hyper does not look at Host.
    InvalidHost,
    /// `Transfer_Encoding`, `content_length`: not framing fields to hyper, but framing fields to
    /// servers that map `_` to `-` (CGI and the frameworks built on it), so a request carrying
    /// one is framed differently by the two hops.
    FramingLookalike,
    /// RFC 9112 §6.3 item 3: both Transfer-Encoding and Content-Length. hyper frames by the
    /// coding (skipping the length field, even a malformed one) and closes afterwards; the
    /// proxy refuses (400), which §6.1 also allows, so no upstream ever sees the pair.
    CodingWithLength,
    /// More than one Transfer-Encoding line (or `chunked` twice). hyper frames by the last line
    /// alone; a hop that reads the first would frame by another coding. Refused (501).
    RepeatedCoding,
    /// RFC 9112 §2.2/§7.1: hyper accepts a bare LF inside the trailer section, and reads the
    /// last chunk's terminator `0\r\n\n` as the start of trailers, swallowing what follows;
    /// the decoder requires CRLF on every chunked line.
    ChunkedBareLf,
    /// Control characters in a chunk extension: hyper skips any byte but LF there.
    ChunkExtControl,
    /// More than 16 hex digits in a chunk size (leading zeros): hyper only checks the value.
    ChunkSizeDigits,
    /// A chunk-size line over 4 KiB of extensions; hyper allows 16 KiB per body.
    ChunkLineLength,
}

/// A disagreement no allow-list entry explains.
type Mismatch = String;

/// Compares the two readings of `input`; the allow-list entries the comparison relied on.
fn compare(input: &[u8]) -> Result<Vec<Stricter>, Mismatch> {
    let ours = ours::read(input);
    let theirs = reference::read(input);
    let why = || format!("ours: {:?}; hyper: {:?}", ours.end, theirs.error);
    for i in 0.. {
        match (ours.requests.get(i), theirs.requests.get(i)) {
            (Some(o), Some(t)) => {
                if (&o.method, &o.target, o.version) != (&t.method, &t.target, t.version) {
                    return Err(format!(
                        "request {i}: ours {} {} {:?}, hyper {} {} {:?}",
                        o.method, o.target, o.version, t.method, t.target, t.version
                    ));
                }
                match (&o.body, &t.body) {
                    (Ok(a), Ok(b)) if a == b => {}
                    (Ok(a), Ok(b)) => {
                        return Err(format!(
                            "request {i}: bodies differ ({} bytes ours, {} hyper's)",
                            a.len(),
                            b.len()
                        ));
                    }
                    (Ok(_), Err(e)) => {
                        return Err(format!(
                            "request {i}: hyper refuses the body ({e}), we accept it"
                        ));
                    }
                    // We stop here; hyper may read on, which is the safe direction.
                    (Err(e), Ok(_)) => return stricter_body(e).map(|s| vec![s]),
                    (Err(_), Err(_)) => return Ok(Vec::new()),
                }
            }
            (Some(_), None) => {
                return Err(format!(
                    "request {i} is read by us, not by hyper ({})",
                    why()
                ));
            }
            (None, Some(t)) => {
                return match &ours.end {
                    ours::End::Refused(r) => stricter_head(r, t).map(|s| vec![s]),
                    _ => Err(format!(
                        "request {i} is read by hyper, not by us ({})",
                        why()
                    )),
                };
            }
            (None, None) => return Ok(Vec::new()),
        }
    }
    unreachable!("the loop returns")
}

/// Which entry covers our refusing a head hyper read as `t`.
fn stricter_head(r: &ours::Refusal, t: &Seen) -> Result<Stricter, Mismatch> {
    let hosts = t.headers.get_all(header::HOST).iter().count();
    let codings = t.headers.get_all(header::TRANSFER_ENCODING).iter().count();
    let lookalike = t.headers.keys().any(|k| {
        let n = k.as_str().replace('_', "-");
        k.as_str().contains('_') && (n == "transfer-encoding" || n == "content-length")
    });
    let s = match r {
        ours::Refusal::NoHost if hosts == 0 => Stricter::NoHost,
        ours::Refusal::Head(HeadError::Host(_)) if hosts > 1 => Stricter::DuplicateHost,
        ours::Refusal::Head(HeadError::Host(_)) if hosts == 1 => Stricter::InvalidHost,
        ours::Refusal::Head(HeadError::Malformed(m))
            if lookalike && m.contains("imitates a framing field") =>
        {
            Stricter::FramingLookalike
        }
        // hyper skips Content-Length once it has seen a coding, so a malformed one is refused
        // here for the same pair.
        ours::Refusal::Head(HeadError::Ambiguous | HeadError::BadLength(_)) if codings > 0 => {
            Stricter::CodingWithLength
        }
        ours::Refusal::Head(HeadError::UnsupportedCoding(_)) if codings > 1 => {
            Stricter::RepeatedCoding
        }
        _ => {
            return Err(format!(
                "we refuse a head hyper reads ({r:?}; hyper saw {} {} with {:?}): no allow-list \
                 entry covers it",
                t.method, t.target, t.headers
            ));
        }
    };
    Ok(s)
}

/// Which entry covers our refusing a chunked body hyper decoded.
fn stricter_body(e: &str) -> Result<Stricter, Mismatch> {
    let s = if e.contains("bare LF") {
        Stricter::ChunkedBareLf
    } else if e.contains("control character in chunk extension") {
        Stricter::ChunkExtControl
    } else if e.contains("chunk size overflows") {
        Stricter::ChunkSizeDigits
    } else if e.contains("chunk-size line too long") {
        Stricter::ChunkLineLength
    } else {
        return Err(format!(
            "we refuse a body hyper accepts ({e}): no allow-list entry covers it"
        ));
    };
    Ok(s)
}

/// Runs [`compare`] over generated inputs; fails on the first mismatch with the input shown.
/// Returns how many inputs both sides read at least one request of, and how many ran.
fn run(strategy: impl Strategy<Value = Vec<u8>>, cases: u32) -> (u32, u32) {
    let (accepted, ran) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&strategy, |input| {
        ran.set(ran.get() + 1);
        let used = compare(&input).map_err(|m| {
            proptest::test_runner::TestCaseError::fail(format!(
                "{m}\ninput: {:?}",
                input.escape_ascii().to_string()
            ))
        })?;
        if used.is_empty() && !ours::read(&input).requests.is_empty() {
            accepted.set(accepted.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    (accepted.get(), ran.get())
}

#[test]
fn generated_requests_read_the_same_as_hyper_reads_them() {
    let (accepted, ran) = run(inputs::request().prop_map(|r| r.bytes()), 1024);
    // Every generated request is well formed: both sides read it, nothing is allow-listed.
    assert_eq!(accepted, ran);
}

#[test]
fn mutated_requests_are_refused_here_whenever_hyper_refuses_them() {
    let (accepted, ran) = run(inputs::mutated(), 1024);
    // Not every mutation breaks a request: the comparison must see both sides accept.
    assert!(accepted > ran / 10, "{accepted} of {ran} accepted");
}

/// The corpus files, by name.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/smuggling");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "http"))
        .map(|p| {
            let name = p
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&p).expect("a corpus file"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_smuggling_corpus_reads_the_same_as_hyper_reads_it() {
    let files = corpus();
    assert!(files.len() >= 25, "{} corpus files", files.len());
    let mut used = BTreeSet::new();
    let mut failures = Vec::new();
    for (name, bytes) in &files {
        match compare(bytes) {
            Ok(s) => used.extend(s),
            Err(m) => failures.push(format!("{name}: {m}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every allow-list entry is needed by some payload: an entry nothing exercises could hide
    // a difference it was never meant to.
    let all = [
        Stricter::NoHost,
        Stricter::DuplicateHost,
        Stricter::InvalidHost,
        Stricter::FramingLookalike,
        Stricter::CodingWithLength,
        Stricter::RepeatedCoding,
        Stricter::ChunkedBareLf,
        Stricter::ChunkExtControl,
        Stricter::ChunkSizeDigits,
        Stricter::ChunkLineLength,
    ];
    let unused: Vec<_> = all.iter().filter(|s| !used.contains(s)).collect();
    assert!(
        unused.is_empty(),
        "allow-list entries no corpus file needs: {unused:?}"
    );
}
